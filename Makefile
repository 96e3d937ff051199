# The two commands the README promises.
CONFIG ?= etc/xnatd.yaml

.PHONY: bench-ingest run test lint bench bench-scale bench-tls

run:            ## run the daemon on the embedded default (SQLite, var/, AE XNAT on 8104)
	python3 -m xnatd run -c $(CONFIG)

test:           ## every test: unit tests and real DCMTK / pynetdicom peers
	python3 -m pytest

lint:           ## ruff, ruff format --check, mypy on xnatd/, a docstring on every public name
	ruff check xnatd tests bench tools
	ruff format --check xnatd tests bench tools
	mypy
	python3 tools/check_docstrings.py

bench:          ## last file to READY, and archive time, for 1,000-instance sessions
	python3 bench/last_file_to_ready.py
	python3 bench/archive_time.py
	python3 bench/anonymization.py
	python3 bench/import_rate.py

bench-ingest:   ## issue 5's suite against storescp, Orthanc and bare pynetdicom (about 15 min)
	python3 bench/ingest.py

bench-scale:    ## ingest and sessions list latency at 0, 10k and 100k sessions, both indexes
	python3 bench/index_scale.py

bench-tls:      ## DICOM over TLS against plain TCP, xnatd and Orthanc (about 10 min; --quick 4)
	python3 bench/tls_ingest.py
