from storage_links._cli import main

raise SystemExit(main())
