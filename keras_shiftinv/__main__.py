import sys

from keras_shiftinv.cli import main

sys.exit(main())
