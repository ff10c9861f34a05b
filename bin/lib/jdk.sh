# shellcheck shell=bash
# Sourced by bin/troupe, bin/test and .ci/run. Defines troupe_find_jdk, which sets
# TROUPE_JAVA_HOME to a JDK 21 or newer (one with both bin/java and bin/javac), looking at:
#   1. $JAVA_HOME, if it is 21 or newer;
#   2. the `java` on PATH (its real home, as the JVM reports it), if it is 21 or newer;
#   3. the usual install locations, choosing the newest version found there.
# On failure it prints one line to stderr and returns 1.
#
# TROUPE_JDK_SEARCH_PATHS (colon-separated glob patterns) replaces the install locations of
# step 3; the tests use it. Written for bash 3.2+ (macOS), safe under `set -euo pipefail`, and
# uses no external commands except `readlink` and the candidate `java` binaries themselves.

TROUPE_JDK_MIN_VERSION=21

troupe_jdk_default_search_paths() {
  local home="${HOME:-}"
  printf '%s' "/usr/lib/jvm/*:/usr/java/*:/opt/java/*:/opt/jdk*:/usr/local/*jdk*"
  if [[ -n $home ]]; then
    printf '%s' ":$home/.sdkman/candidates/java/*:$home/.jdks/*"
  fi
  printf '%s\n' ":/Library/Java/JavaVirtualMachines/*/Contents/Home"
}

# _troupe_parse_java_version TEXT -> prints "MAJOR MINOR PATCH" from `java -version` output.
# Handles "17.0.15", "21", "25.0.3", "25-ea", "21.0.2+13", "11.0.16.1" and "1.8.0_392" (-> 8 0 392).
_troupe_parse_java_version() {
  local text="$1" ver re='version "([^"]+)"'
  [[ $text =~ $re ]] || return 1
  ver="${BASH_REMATCH[1]}"
  local major=0 minor=0 patch=0
  re='^1\.([0-9]+)(\.([0-9]+))?(_([0-9]+))?'
  if [[ $ver =~ $re ]]; then              # legacy 1.x scheme
    major="${BASH_REMATCH[1]}"
    minor="${BASH_REMATCH[3]:-0}"
    patch="${BASH_REMATCH[5]:-0}"
  else
    re='^([0-9]+)(\.([0-9]+))?(\.([0-9]+))?'
    [[ $ver =~ $re ]] || return 1
    major="${BASH_REMATCH[1]}"
    minor="${BASH_REMATCH[3]:-0}"
    patch="${BASH_REMATCH[5]:-0}"
  fi
  # 10# strips leading zeros so that bash does not read "08" as octal.
  printf '%d %d %d\n' "$((10#$major))" "$((10#$minor))" "$((10#$patch))"
}

# _troupe_jdk_version HOME -> prints "MAJOR MINOR PATCH" if HOME has bin/java and bin/javac.
_troupe_jdk_version() {
  local home="$1" out
  [[ -n $home && -x $home/bin/java && ! -d $home/bin/java && -x $home/bin/javac ]] || return 1
  out="$("$home/bin/java" -version 2>&1)" || return 1
  _troupe_parse_java_version "$out"
}

# _troupe_path_java_home JAVA -> prints the real home of a java binary found on PATH.
_troupe_path_java_home() {
  local java="$1" out home="" re=$'java\\.home = ([^\r\n]+)' link dir
  # Ask the JVM itself: right through symlinks, alternatives, sdkman and macOS /usr/bin stubs.
  out="$("$java" -XshowSettings:properties -version 2>&1)" || out=""
  if [[ $out =~ $re ]]; then
    home="${BASH_REMATCH[1]}"
    # JDK 8 reports its jre/ directory.
    if [[ $home == */jre && -x ${home%/jre}/bin/javac ]]; then home="${home%/jre}"; fi
  fi
  if [[ -z $home || ! -x $home/bin/javac ]]; then
    # Fall back to following the symlinks by hand.
    while [[ -L $java ]]; do
      link="$(readlink "$java")" || break
      if [[ $link == /* ]]; then java="$link"; else java="${java%/*}/$link"; fi
    done
    dir="$(CDPATH='' cd -P "${java%/*}/.." 2>/dev/null && pwd)" || return 1
    home="$dir"
  fi
  printf '%s\n' "$home"
}

# _troupe_version_newer "A B C" "X Y Z" -> true if the first version is newer.
_troupe_version_newer() {
  local a1 a2 a3 b1 b2 b3
  read -r a1 a2 a3 <<<"$1"
  read -r b1 b2 b3 <<<"$2"
  if ((a1 != b1)); then ((a1 > b1)); return; fi
  if ((a2 != b2)); then ((a2 > b2)); return; fi
  ((a3 > b3))
}

_troupe_version_ok() {
  local major
  read -r major _ <<<"$1"
  ((major >= TROUPE_JDK_MIN_VERSION))
}

# _troupe_expand_search_paths "GLOB:GLOB:..." -> prints the existing directories, one a line.
# Runs in a subshell, so the glob options it sets do not leak into the caller's shell.
_troupe_expand_search_paths() (
  shopt -s nullglob
  set +f
  IFS=:
  local -a patterns
  read -r -a patterns <<<"$1"
  IFS=
  local pattern match
  for pattern in ${patterns[@]+"${patterns[@]}"}; do
    [[ -n $pattern ]] || continue
    # Unquoted on purpose: glob expansion, no word splitting (IFS is empty).
    # shellcheck disable=SC2206
    local -a matches=($pattern)
    for match in ${matches[@]+"${matches[@]}"}; do
      if [[ -d $match ]]; then printf '%s\n' "${match%/}"; fi
    done
  done
)

troupe_find_jdk() {
  local v java home

  # 1. JAVA_HOME
  home="${JAVA_HOME:-}"
  home="${home%/}"
  if [[ -n $home ]] && v="$(_troupe_jdk_version "$home")" && _troupe_version_ok "$v"; then
    TROUPE_JAVA_HOME="$(CDPATH='' cd -P "$home" && pwd)"
    export TROUPE_JAVA_HOME
    return 0
  fi

  # 2. java on PATH
  if java="$(type -P java)" && [[ -n $java ]] \
    && home="$(_troupe_path_java_home "$java")" \
    && v="$(_troupe_jdk_version "$home")" && _troupe_version_ok "$v"; then
    TROUPE_JAVA_HOME="$(CDPATH='' cd -P "$home" && pwd)"
    export TROUPE_JAVA_HOME
    return 0
  fi

  # 3. usual install locations: the newest JDK found there.
  local search="${TROUPE_JDK_SEARCH_PATHS-}"
  if [[ -z ${TROUPE_JDK_SEARCH_PATHS+x} ]]; then search="$(troupe_jdk_default_search_paths)"; fi

  local best="" best_v="" cand
  local -a candidates=()
  while IFS= read -r cand; do
    candidates+=("$cand")
  done < <(_troupe_expand_search_paths "$search")
  for cand in ${candidates[@]+"${candidates[@]}"}; do
    if v="$(_troupe_jdk_version "$cand")" && _troupe_version_ok "$v"; then
      if [[ -z $best ]] || _troupe_version_newer "$v" "$best_v"; then
        best="$cand"
        best_v="$v"
      fi
    fi
  done

  if [[ -n $best ]]; then
    TROUPE_JAVA_HOME="$(CDPATH='' cd -P "$best" && pwd)"
    export TROUPE_JAVA_HOME
    return 0
  fi

  local looked="" pattern
  local -a patterns=()
  IFS=: read -r -a patterns <<<"$search"
  for pattern in ${patterns[@]+"${patterns[@]}"}; do
    [[ -n $pattern ]] || continue
    pattern="${pattern%/\*}"
    if [[ -n ${HOME:-} && $pattern == "$HOME"/* ]]; then pattern="~${pattern#"$HOME"}"; fi
    looked="${looked:+$looked, }$pattern"
  done
  [[ -n $looked ]] || looked="no other place"
  printf 'troupe: no JDK %s or newer found (looked at JAVA_HOME, PATH, %s); install one or set JAVA_HOME\n' \
    "$TROUPE_JDK_MIN_VERSION" "$looked" >&2
  return 1
}
