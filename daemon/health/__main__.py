import sys

from daemon.health.rendering import main

sys.exit(main())
