# Sourced by bin/run, bin/compare, bin/bench and bin/test: preload tcmalloc when it is installed (bin/setup
# installs Debian's libtcmalloc-minimal4). glibc's malloc returns XLA:CPU's large per-step buffers to the
# kernel and faults them in again at every step; with tcmalloc a short default run's kernel time drops from
# about 12% to 4% of its CPU time, its page faults 6x, its wall time 6-9% (docs/results.md, "Kernel time").
# LWCL_TCMALLOC=0 turns it off; for `python -m lwcl.main`, set LD_PRELOAD yourself (README).
if [ "${LWCL_TCMALLOC:-1}" != 0 ]; then
  for lib in /usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 /usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4 \
             /usr/lib64/libtcmalloc_minimal.so.4; do
    if [ -f "$lib" ]; then
      case ":${LD_PRELOAD:-}:" in *":$lib:"*) ;; *) export LD_PRELOAD="$lib${LD_PRELOAD:+:$LD_PRELOAD}" ;; esac
      break
    fi
  done
fi
