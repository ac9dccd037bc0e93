from netdef.cli import main

raise SystemExit(main())
