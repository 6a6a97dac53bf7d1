"""``python -m iotstream``."""

from iotstream.cli import main

raise SystemExit(main())
