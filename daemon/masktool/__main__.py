import sys

from masktool.cli import main

sys.exit(main())
