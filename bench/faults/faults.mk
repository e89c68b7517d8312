# The fault suite (bench/faults/run.py, see bench/faults/README.md): about
# 2 minutes, loopback only; a benchmark, so run it alone:
#   flock /work/.bench.lock make faults
#   make faults FAULTS="redis_kill slowloris"     some cases only
.PHONY: faults
faults: all
	SHADOWTEE_BUILD=$(abspath $(BUILD)) /usr/bin/python3 bench/faults/run.py $(FAULTS)
