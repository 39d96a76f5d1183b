# Functions every Rill follow script shares. Sourced first; the caller has
# set p (the log's path), d (its folder), b (its file name), iv (the poll
# interval, as sleep takes it), fpb (bytes of a full fingerprint) and chunk
# (the largest chunk the chunk reader sends at once).
#
#   ident FILE      ino, dev, size, and vn/fp: the fingerprint of the first
#                   min(size, fpb) bytes
#   fpof FILE N     the fingerprint of the first N bytes: POSIX cksum, or
#                   the first 32 bits of md5sum where cksum is missing
#                   (Debian's BusyBox); 0 for N = 0
#   byino DIR INO   found = the name of DIR's regular file with inode INO
#                   (found by find -inum: a name is never parsed from ls)
#   fits FILE VLEN VFP MINSIZE
#                   FILE is at least MINSIZE long and its first VLEN bytes
#                   have fingerprint VFP
#   findcopy DIR VLEN VFP MINSIZE NAME [OTHER...]
#                   found = the newest regular file of DIR other than NAME
#                   that fits and is NAME's: its name starts with NAME (a
#                   copy `app.log.1`, `app.log-20261202`) or with NAME's
#                   stem and a dot (`app.1.log`, logrotate's `extension`),
#                   and with no OTHER (the other logs followed in DIR) that
#                   it names more closely
#   nap             says RILL-TICK on stderr (the tap hears from every
#                   channel at least once per interval) and sleeps
#   osize           sz = the size of the file being read (cur); fails once
#                   it is gone (only possible when read by name)
#   chunks          sends the file from off in checked chunks until it is
#                   truncated or gone, or, once rot is set (the path names
#                   another file now, or this is a finish), until it stopped
#                   growing for one interval; then holds the file open until
#                   the channel closes (a catch-up may still need it)
#   hold            keeps fd 4 open, saying RILL-TICK, until killed

LC_ALL=C; export LC_ALL
# Words split from command output are never file name patterns.
set -f

nap() { echo RILL-TICK >&2; sleep "$iv"; }

hold() { while :; do nap; done; }

fpof() {
  [ "$2" -gt 0 ] || { echo 0; return; }
  r=$(head -c "$2" "$1" 2>/dev/null | cksum 2>/dev/null); r=${r%% *}
  if [ -z "$r" ]; then
    r=$(head -c "$2" "$1" 2>/dev/null | md5sum 2>/dev/null); r=$(printf %.8s "$r"); r=$((0x${r:-0}))
  fi
  echo "$r"
}

ident() {
  f=$1
  # shellcheck disable=SC2046 # the inode is the first word
  set -- $(ls -diL "$f" 2>/dev/null); ino=${1:-0}
  dev=$(stat -L -c %d "$f" 2>/dev/null || stat -L -f %d "$f" 2>/dev/null); dev=${dev:-0}
  size=$(wc -c 2>/dev/null < "$f"); size=$((size + 0))
  vn=$size; [ "$vn" -le "$fpb" ] || vn=$fpb
  fp=$(fpof "$f" "$vn")
}

byino() {
  # Every match as "DIR/./NAME/": no name holds a "/", so the first
  # name ends at the first "/" after the prefix, whatever else it holds
  # (newlines, leading blanks, quotes).
  found=$(find "$1/." ! -name . -prune -type f -inum "$2" -exec printf '%s/' {} + 2>/dev/null)
  found=${found#"$1/./"}; found=${found%%/*}
  [ -n "$found" ]
}

fits() {
  s=$(wc -c 2>/dev/null < "$1"); s=$((s + 0))
  [ "$s" -ge "$4" ] && [ "$(fpof "$1" "$2")" = "$3" ]
}

findcopy() {
  found=
  cd_=$1 cvlen=$2 cvfp=$3 cmin=$4 cname=$5
  shift 5
  set +f
  for c in "$cd_"/* "$cd_"/.[!.]* "$cd_"/..?*; do
    cn=${c##*/}
    if [ ! -f "$c" ] || [ "$cn" = "$cname" ]; then continue; fi
    # How closely it names this log: all of its name, or only its stem.
    case $cn in
      "$cname"*) mine=${#cname} ;;
      "${cname%.*}."*) mine=0 ;;
      *) continue ;;
    esac
    for o in "$@"; do
      case $cn in "$o"*) [ "${#o}" -le "$mine" ] || continue 2 ;; esac
    done
    # -nt is in dash, bash, BusyBox and BSD sh (and POSIX since 2024).
    # shellcheck disable=SC3013
    if [ -n "$found" ] && ! [ "$c" -nt "$cd_/$found" ]; then continue; fi
    if fits "$c" "$cvlen" "$cvfp" "$cmin"; then found=$cn; fi
  done
  set -f
}

osize() {
  if [ -n "$rot" ] && [ "$src" != /dev/fd/4 ]; then
    byino "$d" "$me" || return 1; cur=$d/$found
  else
    cur=$src
  fi
  sz=$(wc -c 2>/dev/null < "$cur"); sz=$((sz + 0))
}

same() {
  [ "$cur" = /dev/fd/4 ] && return 0
  # shellcheck disable=SC2046 # the inode is the first word
  set -- $(ls -di "$cur" 2>/dev/null); [ "${1:-0}" = "$me" ]
}

chunks() {
  prev=-1
  while :; do
    if [ -z "$rot" ]; then
      # shellcheck disable=SC2046 # the inode is the first word
      set -- $(ls -diL "$p" 2>/dev/null)
      if [ "${1:-gone}" != "$me" ]; then rot=1; echo "RILL-ROTATED ${1:-gone}"; fi
    fi
    osize || { echo RILL-GONE; return; }
    if [ -z "$rot" ] && [ "$sz" != "$lastsz" ]; then echo "RILL-SIZE $sz" >&2; lastsz=$sz; fi
    if [ "$sz" -lt "$off" ]; then echo "RILL-TRUNCATED $sz"; return; fi
    if [ "$sz" -gt "$off" ]; then
      [ "$(fpof "$cur" "$vn")" = "$fp" ] || { echo "RILL-TRUNCATED $sz"; return; }
      if [ "$vn" -lt "$fpb" ] && [ "$sz" -ge "$fpb" ]; then vn=$fpb; fp=$(fpof "$cur" "$vn"); echo "RILL-FP $vn $fp"; fi
      len=$((sz - off)); [ "$len" -le "$chunk" ] || len=$chunk
      echo "RILL-CHUNK $off $len"
      tail -c +$((off + 1)) "$cur" 2>/dev/null | head -c "$len"
      osize && same && [ "$sz" -ge $((off + len)) ] && [ "$(fpof "$cur" "$vn")" = "$fp" ] || return
      echo RILL-OK
      off=$((off + len)); prev=-1
      continue
    fi
    if [ -n "$rot" ]; then
      if [ "$sz" = "$prev" ]; then echo "RILL-FINAL $sz"; hold; fi
      prev=$sz
    fi
    nap
  done
}
