import sys

from bot.schema import main

sys.exit(main(sys.argv[1:]))
