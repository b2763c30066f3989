/* creator: makes the shared memory object /myMemoryObj, 200 bytes, mode 0600,
 * its space reserved (a full /dev/shm is an error here, never SIGBUS later).
 * Usage: creator [NAME]   (then: writer, reader) */
#include <stdio.h>

#include "shmkit.h"

int main(int argc, char **argv) {
    const char *name = argc > 1 ? argv[1] : "/myMemoryObj";
    shmkit_object *obj;
    if (shmkit_object_open(name, SHMKIT_CREATE | SHMKIT_EXCL | SHMKIT_WRITE, 0600, 200, &obj) < 0) {
        fprintf(stderr, "creator: %s\n", shmkit_last_error());
        return 1;
    }
    printf("created %s (200 bytes)\n", name);
    shmkit_object_close(obj); /* the object stays until reader removes it */
    return 0;
}
