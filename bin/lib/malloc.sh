# shellcheck shell=bash
# Sourced by bin/troupe. Defines troupe_pick_malloc, which chooses the native memory allocator of
# the JVM about to start (and of every process it starts: bench runs, the PyTorch peer) by
# prepending a library to LD_PRELOAD. TROUPE_MALLOC says which:
#   auto      (default) tcmalloc if it is installed, glibc's malloc otherwise, with a one-line note;
#   tcmalloc  tcmalloc, or an error if it is not installed;
#   glibc     glibc's malloc: LD_PRELOAD is left as it is, and nothing is printed;
#   /a/path   that library (e.g. a jemalloc), or an error if it is not a file.
# Why: libtorch allocates and frees tensors of many megabytes on every step. glibc keeps the freed
# memory of its heap fragmented (a third of lora-int8's peak on bench-m) and returns large blocks
# to the kernel, so they fault in again page by page on the next step; tcmalloc reuses them. See
# docs/architecture.md, "The native allocator", for the measurements.
#
# If LD_PRELOAD already names an allocator (tcmalloc, jemalloc, mimalloc), that one is kept.
# TROUPE_MALLOC_SEARCH_PATHS (colon-separated glob patterns of library files) replaces the places
# tcmalloc is looked for; the tests use it. Returns 1 after one line on stderr when the choice
# cannot be honoured; sets TROUPE_MALLOC_CHOSEN to the library used, or "glibc".

troupe_malloc_default_search_paths() {
  local d
  printf '%s' "/usr/lib/*-linux-gnu/libtcmalloc_minimal.so.4:/usr/lib64/libtcmalloc_minimal.so.4"
  for d in /usr/lib /usr/local/lib /opt/homebrew/lib; do
    printf '%s' ":$d/libtcmalloc_minimal.so.4"
  done
  printf '\n'
}

# Prints the first existing file matching the search paths; returns 1 if there is none.
_troupe_find_tcmalloc() {
  local paths="${TROUPE_MALLOC_SEARCH_PATHS:-$(troupe_malloc_default_search_paths)}"
  local pattern f
  local IFS=':'
  for pattern in $paths; do
    [[ -n $pattern ]] || continue
    # The glob is expanded here on purpose (unquoted), once per pattern.
    for f in $pattern; do
      if [[ -f $f ]]; then
        printf '%s\n' "$f"
        return 0
      fi
    done
  done
  return 1
}

troupe_pick_malloc() {
  local choice="${TROUPE_MALLOC:-auto}" lib=""
  TROUPE_MALLOC_CHOSEN=glibc
  case ":${LD_PRELOAD:-}:" in
    *tcmalloc* | *jemalloc* | *mimalloc*)
      TROUPE_MALLOC_CHOSEN="${LD_PRELOAD}"
      return 0
      ;;
  esac
  case "$choice" in
    glibc) return 0 ;;
    auto)
      if ! lib="$(_troupe_find_tcmalloc)"; then
        echo "troupe: note: tcmalloc not found (apt install libtcmalloc-minimal4); using glibc's malloc, which is slower here and keeps more memory resident (TROUPE_MALLOC=glibc silences this)" >&2
        return 0
      fi
      ;;
    tcmalloc)
      if ! lib="$(_troupe_find_tcmalloc)"; then
        echo "troupe: TROUPE_MALLOC=tcmalloc but libtcmalloc_minimal.so.4 was not found (apt install libtcmalloc-minimal4)" >&2
        return 1
      fi
      ;;
    /*)
      if [[ ! -f $choice ]]; then
        echo "troupe: TROUPE_MALLOC=$choice: no such file" >&2
        return 1
      fi
      lib="$choice"
      ;;
    *)
      echo "troupe: TROUPE_MALLOC=$choice: expected auto, tcmalloc, glibc or the absolute path of an allocator library" >&2
      return 1
      ;;
  esac
  export LD_PRELOAD="$lib${LD_PRELOAD:+:$LD_PRELOAD}"
  TROUPE_MALLOC_CHOSEN="$lib"
}
