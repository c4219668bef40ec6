import sys

from daemon.health.checks import main

sys.exit(main())
