# Two processes over a shmkit channel:
#   python hello.py consume &   python hello.py produce
import sys

import shmkit

name = sys.argv[2] if len(sys.argv) > 2 else "hello"
channel = shmkit.Channel.open_or_create(name, capacity=64, max_message=256)
if sys.argv[1] == "produce":
    with channel.sender() as tx:
        for i in range(5):
            tx.send(f"hello {i} from the producer".encode())
else:
    for message in channel.receiver():  # until every sender is gone
        print(message.decode(), flush=True)
    channel.unlink()
