# Functions every Rill follow script shares. Sourced first; the caller has
# set p (the log's path), d (its folder), b (its file name), iv (the poll
# interval, as sleep takes it), fpb (bytes of a full fingerprint) and chunk
# (the largest chunk the chunk reader sends at once). Where z names a
# decompressor (`gzip -dc`, set by findzipped), the file is a compressed
# rotation and every function reads what it decompresses to.
#
#   bytes FILE FROM LEN
#                   LEN bytes of FILE from byte FROM
#   fsize FILE      s = FILE's size
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
#   findzipped DIR VLEN VFP MINSIZE NAME [OTHER...]
#                   as findcopy, among NAME's compressed rotations (.gz,
#                   .zst, .xz, .bz2, where the server has the tool); sets z.
#                   None for VLEN 0.
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
z='' zext='' zsz=0

nap() { echo RILL-TICK >&2; sleep "$iv"; }

hold() { while :; do nap; done; }

bytes() {
  if [ -n "$z" ]; then
    # shellcheck disable=SC2086 # z is the tool and its options
    $z < "$1" 2>/dev/null | tail -c +$(($2 + 1)) | head -c "$3"
  else
    tail -c +$(($2 + 1)) "$1" 2>/dev/null | head -c "$3"
  fi
}

fsize() {
  if [ -n "$z" ]; then
    # shellcheck disable=SC2086 # z is the tool and its options
    s=$($z < "$1" 2>/dev/null | wc -c)
  else
    s=$(wc -c 2>/dev/null < "$1")
  fi
  s=$((s + 0))
}

fpof() {
  [ "$2" -gt 0 ] || { echo 0; return; }
  r=$(bytes "$1" 0 "$2" | cksum 2>/dev/null); r=${r%% *}
  if [ -z "$r" ]; then
    r=$(bytes "$1" 0 "$2" | md5sum 2>/dev/null); r=$(printf %.8s "$r"); r=$((0x${r:-0}))
  fi
  echo "$r"
}

ident() {
  f=$1
  # shellcheck disable=SC2046 # the inode is the first word
  set -- $(ls -diL "$f" 2>/dev/null); ino=${1:-0}
  dev=$(stat -L -c %d "$f" 2>/dev/null || stat -L -f %d "$f" 2>/dev/null); dev=${dev:-0}
  fsize "$f"; size=$s
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
  [ "$(fpof "$1" "$2")" = "$3" ] && fsize "$1" && [ "$s" -ge "$4" ]
}

findzipped() {
  # An empty start tells no file from another.
  [ "$2" -gt 0 ] || return 1
  zfound='' zwith=''
  for ext in gz zst xz bz2; do
    case $ext in
      gz) tool=gzip ;; zst) tool=zstd ;; xz) tool=xz ;; bz2) tool=bzip2 ;;
    esac
    command -v "$tool" >/dev/null 2>&1 || continue
    z="$tool -dc"; zext=.$ext
    findcopy "$@"
    # shellcheck disable=SC3013 # as in findcopy
    if [ -n "$found" ] && { [ -z "$zfound" ] || [ "$1/$found" -nt "$1/$zfound" ]; }; then
      zfound=$found zwith=$z
    fi
  done
  found=$zfound z=$zwith zext=
  [ -n "$found" ]
}

findcopy() {
  found=
  cd_=$1 cvlen=$2 cvfp=$3 cmin=$4 cname=$5
  shift 5
  set +f
  for c in "$cd_"/* "$cd_"/.[!.]* "$cd_"/..?*; do
    cn=${c##*/}
    if [ ! -f "$c" ] || [ "$cn" = "$cname" ]; then continue; fi
    case $cn in *"$zext") ;; *) continue ;; esac
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
  if [ -n "$z" ]; then cur=$src; sz=$zsz; return 0; fi
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
      bytes "$cur" "$off" "$len"
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
