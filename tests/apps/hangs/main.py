"""Never finishes importing: the runtime must give up and the command must end."""

import time

while True:
    time.sleep(0.05)
