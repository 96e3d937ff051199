from xnatd.cli import main

raise SystemExit(main())
