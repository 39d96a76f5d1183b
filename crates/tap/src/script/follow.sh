# Follows the log from a start point (the module docs of script/mod.rs describe
# the header and what follows it).
#
# Arguments: PATH DIR NAME INTERVAL FP_BYTES CHUNK_BYTES START MODE CLAIM
# STREAM_POLL, where START is `end`, `0` or `INO:OFFSET:VLEN:VFP` (resume
# there if the file is still that one), MODE is `auto` or `chunks`, and
# CLAIM `-` or `AT:LEN:CKSUM`: the previous reader stopped at what read like
# tail's "file truncated" at AT; resume only if the file holds those bytes
# there (they were a log line), else the file was truncated: read it from 0.
p=$1 d=$2 iv=$4 fpb=$5 chunk=$6 from=$7 mode=$8 claim=$9
shift 9
spoll=$1
shift

# Whether the file holds the claimed bytes (CLAIM above), or there is none.
holds() {
  [ "$claim" = - ] && return 0
  cat=${claim%%:*}; r=${claim#*:}; clen=${r%%:*}; cck=${r#*:}
  [ "$(tail -c +$((cat + 1)) "$src" 2>/dev/null | head -c "$clen" | cksum)" = "$cck $clen" ]
}

# Says RILL-FP once the file grew to a full fingerprint (a file that was
# short at its start is known by all of its first bytes from then on).
grown() {
  if [ "$vn" -lt "$fpb" ] && [ "$sz" -ge "$fpb" ]; then vn=$fpb; fp=$(fpof "$cur" "$vn"); echo "RILL-FP $vn $fp" >&2; fi
}

main() {
  if [ ! -e "$p" ]; then
    if [ -d "$d" ]; then echo RILL-WAIT; else echo RILL-WAIT-DIR; fi
    while [ ! -e "$p" ]; do nap; done
    start=0
  else
    start=$from
  fi
  exec 4<"$p" || exit 1
  src=/dev/fd/4; [ -r "$src" ] || src=$p
  ident "$src"; me=$ino
  case $start in
    end) start=$size ;;
    *:*:*:*)
      want=${start%%:*}; r=${start#*:}; off=${r%%:*}; r=${r#*:}; wvn=${r%%:*}; wfp=${r#*:}
      if [ "$ino" = "$want" ] && [ "$size" -ge "$off" ] && [ "$(fpof "$src" "$wvn")" = "$wfp" ] && holds; then start=$off; else start=0; fi ;;
  esac
  if [ "$mode" = auto ]; then
    mode=chunks
    if [ "$src" = /dev/fd/4 ]; then
      case $(tail --version 2>/dev/null) in *GNU*) mode=stream ;; esac
    fi
  fi
  echo "RILL $dev $ino $vn $fp $start $mode"
  rot=
  if [ "$mode" = chunks ]; then off=$start; chunks; exit 0; fi
  tail -s "$spoll" -c +$((start + 1)) -f "$src" 2>&1 &
  t=$!
  while kill -0 "$t" 2>/dev/null; do
    nap
    # shellcheck disable=SC2046 # the inode is the first word
    set -- $(ls -diL "$p" 2>/dev/null)
    if [ "${1:-gone}" != "$me" ]; then
      echo "RILL-ROTATED ${1:-gone}" >&2
      rot=1; prev=-1
      while :; do
        osize || { echo RILL-GONE >&2; break; }
        grown
        if [ "$sz" = "$prev" ]; then echo "RILL-FINAL $sz" >&2; break; fi
        prev=$sz; nap
      done
      wait "$t"; exit 0
    fi
    osize
    if [ "$sz" != "$lastsz" ]; then echo "RILL-SIZE $sz" >&2; lastsz=$sz; fi
    grown
  done
  exit 1
}
