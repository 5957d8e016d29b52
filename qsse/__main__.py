from qsse.cli import main

raise SystemExit(main())
