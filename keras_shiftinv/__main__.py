import sys

from keras_shiftinv.app.cli import main

sys.exit(main())
