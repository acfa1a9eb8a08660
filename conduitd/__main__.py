from conduitd.cli import main

raise SystemExit(main())
