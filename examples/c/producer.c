/* producer: the textbook bounded buffer's producer over a shmkit channel of
 * 5 ints. No semaphores to forget to initialise, no mutex a dead process
 * can hold (the ring is lock-free), no endless loop: it sends COUNT items
 * and leaves, and the consumer learns that it left.
 * Usage: producer [NAME [COUNT]] */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "shmkit.h"

int main(int argc, char **argv) {
    const char *name = argc > 1 ? argv[1] : "/bounded-buffer";
    int count = argc > 2 ? atoi(argv[2]) : 20;
    shmkit_channel *ch = NULL;
    shmkit_sender *tx = NULL;
    int rc = shmkit_channel_create(name, 5 /* rounded up to 8 */, sizeof(int), 0600, 0, &ch);
    if (rc == -EEXIST)
        rc = shmkit_channel_open(name, &ch);
    if (rc == 0)
        rc = shmkit_sender_open(ch, &tx);
    for (int item = 0; rc == 0 && item < count; item++) {
        /* Waits while the buffer is full; -EPIPE if no consumer is left. */
        rc = shmkit_send(tx, &item, sizeof item, 10000);
        if (rc == 0)
            printf("produced %d\n", item);
    }
    if (rc < 0)
        fprintf(stderr, "producer: %s\n", shmkit_last_error());
    shmkit_sender_close(tx);
    shmkit_channel_close(ch);
    return rc < 0;
}
