import sys

from credhelper.fastpath import main

sys.exit(main())
