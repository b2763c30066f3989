/* writer: opens the object read-write, maps it, copies a greeting in.
 * Usage: writer [NAME [TEXT]] */
#include <stdio.h>
#include <string.h>

#include "shmkit.h"

int main(int argc, char **argv) {
    const char *name = argc > 1 ? argv[1] : "/myMemoryObj";
    const char *text = argc > 2 ? argv[2] : "Hello from the writer process!";
    shmkit_object *obj = NULL;
    shmkit_map *map = NULL;
    int rc = shmkit_object_open(name, SHMKIT_WRITE, 0, 0, &obj);
    if (rc == 0)
        rc = shmkit_object_map(obj, 1, &map);
    size_t len = 0;
    if (rc == 0)
        rc = shmkit_map_len(map, &len);
    /* The NUL too, so the reader knows where the text ends; a text too
     * long for the object is an error (-EINVAL), not an overflow. */
    if (rc == 0)
        rc = shmkit_map_write(map, 0, text, strlen(text) + 1);
    if (rc < 0)
        fprintf(stderr, "writer: %s\n", shmkit_last_error());
    else
        printf("wrote %zu bytes into %s\n", strlen(text) + 1, name);
    shmkit_map_close(map);
    shmkit_object_close(obj);
    return rc < 0;
}
