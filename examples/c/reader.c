/* reader: opens the object read-only, learns its size, maps it read-only,
 * prints the text, then removes the object (no object is left behind).
 * Usage: reader [NAME] */
#include <stdio.h>
#include <stdlib.h>

#include "shmkit.h"

int main(int argc, char **argv) {
    const char *name = argc > 1 ? argv[1] : "/myMemoryObj";
    shmkit_object *obj = NULL;
    shmkit_map *map = NULL;
    uint64_t size = 0;
    char *text = NULL;
    int rc = shmkit_object_open(name, 0, 0, 0, &obj);
    if (rc == 0)
        rc = shmkit_object_size(obj, &size); /* fstat */
    if (rc == 0)
        rc = shmkit_object_map(obj, 0, &map); /* read-only */
    if (rc == 0 && (text = calloc(1, (size_t)size + 1)) == NULL)
        rc = -1;
    if (rc == 0)
        rc = shmkit_map_read(map, 0, text, (size_t)size); /* a copy: never torn */
    if (rc == 0) {
        printf("%s\n", text);
        rc = shmkit_unlink(name);
    }
    if (rc < 0)
        fprintf(stderr, "reader: %s\n", rc == -1 ? "out of memory" : shmkit_last_error());
    free(text);
    shmkit_map_close(map);
    shmkit_object_close(obj);
    return rc < 0;
}
