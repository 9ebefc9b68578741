"""``python -m aqa.train RUN_DIR``: the one training entry point (app, CLI, jobs and tests); a
feature extraction run (``run.json`` kind ``features``) runs ``aqa.features.run.main``."""

import sys

if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] in ("-h", "--help"):
        print("usage: python -m aqa.train RUN_DIR\n\nTrain (or resume) the run in RUN_DIR, "
              "created by `python -m aqa train`.", file=sys.stderr)
        sys.exit(0 if len(sys.argv) == 2 else 2)
    # Catch a stop before the heavy imports: a SIGTERM during start-up still ends "stopped".
    from aqa.train.stopflag import STOP

    STOP.install()
    from aqa.features.run import is_features_run

    if is_features_run(sys.argv[1]):  # a feature extraction run (aqa features extract)
        from aqa.features.run import main as extract_main

        sys.exit(extract_main(sys.argv[1], STOP))
    from aqa.train.loop import main

    sys.exit(main(sys.argv[1]))
