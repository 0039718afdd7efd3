from messengerd.cli import main

raise SystemExit(main())
