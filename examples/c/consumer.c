/* consumer: the bounded buffer's consumer. Receives until every producer
 * is gone (even one that was killed) and the buffer is empty, then removes
 * the channel. Usage: consumer [NAME] */
#include <errno.h>
#include <stdio.h>

#include "shmkit.h"

int main(int argc, char **argv) {
    const char *name = argc > 1 ? argv[1] : "/bounded-buffer";
    shmkit_channel *ch = NULL;
    shmkit_receiver *rx = NULL;
    int rc = shmkit_channel_create(name, 5, sizeof(int), 0600, 0, &ch);
    if (rc == -EEXIST)
        rc = shmkit_channel_open(name, &ch);
    if (rc == 0)
        rc = shmkit_receiver_open(ch, &rx);
    long consumed = 0;
    while (rc == 0) {
        int item;
        size_t len;
        /* Waits at most 10 s for each item: a producer that never comes is
         * an error (-ETIMEDOUT), not a hang. */
        rc = shmkit_recv(rx, &item, sizeof item, &len, 10000);
        if (rc == 0) {
            printf("consumed %d\n", item);
            consumed++;
        }
    }
    if (rc == -EPIPE) { /* every producer left and the buffer is empty */
        printf("%ld items; the producers are gone\n", consumed);
        rc = 0;
    } else {
        fprintf(stderr, "consumer: %s\n", shmkit_last_error());
    }
    if (ch != NULL && shmkit_channel_unlink(ch) < 0)
        fprintf(stderr, "consumer: %s\n", shmkit_last_error());
    shmkit_receiver_close(rx);
    shmkit_channel_close(ch);
    return rc < 0;
}
