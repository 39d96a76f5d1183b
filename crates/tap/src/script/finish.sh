# Reads an old file of the log's folder from OFFSET in chunks until it
# stops growing (RILL-FINAL <size>), with the same header as a follow;
# RILL-GONE instead of a header when no file there is at least OFFSET long
# with first bytes matching VLEN/VFP.
#
# Arguments: PATH DIR NAME INTERVAL FP_BYTES CHUNK_BYTES INO VLEN VFP OFFSET
# [OTHER...], where INO is the old file's inode, `INO:PID` for the file PID
# holds open as its fd 4 (another channel's script: found there even once
# gone from DIR, else by inode), or `-` for the newest file of this log
# whose first bytes match (a copytruncate copy). OTHER: the names of the
# other logs followed in DIR, whose copies are not this log's. A file no
# longer there is looked for among the log's compressed rotations by what
# it decompresses to (the header then names the compressed file).
p=$1 d=$2 b=$3 iv=$4 fpb=$5 chunk=$6 old=$7 vlen=$8 vfp=$9
shift 9
offset=$1
shift

# The inode of FILE (a function: its `set --` leaves main's arguments).
inoof() {
  # shellcheck disable=SC2046 # the inode is the first word
  set -- $(ls -diL "$1" 2>/dev/null); echo "${1:-}"
}

main() {
  case $old in
    *:*)
      held=/proc/${old#*:}/fd/4; old=${old%%:*}
      if [ -r "$held" ]; then
        exec 4<"$held"
        if [ "$(inoof /dev/fd/4)" = "$old" ] && fits /dev/fd/4 "$vlen" "$vfp" "$offset"; then
          src=/dev/fd/4
          ident "$src"; me=$ino
          echo "RILL $dev $ino $vn $fp $offset chunks"
          off=$offset; rot=1
          chunks
          return
        fi
        exec 4<&-
      fi ;;
  esac
  if [ "$old" = - ]; then
    findcopy "$d" "$vlen" "$vfp" "$offset" "$b" "$@"; n=$found
  else
    if [ "$(inoof "$p")" = "$old" ]; then n=$b; else byino "$d" "$old"; n=$found; fi
    [ -n "$n" ] && fits "$d/$n" "$vlen" "$vfp" "$offset" || n=
  fi
  if [ -z "$n" ] && findzipped "$d" "$vlen" "$vfp" "$offset" "$b" "$@"; then n=$found; fi
  if [ -z "$n" ]; then echo RILL-GONE; exit 0; fi
  exec 4<"$d/$n" || { echo RILL-GONE; exit 0; }
  src=/dev/fd/4; [ -r "$src" ] || src=$d/$n
  ident "$src"; me=$ino zsz=$size
  echo "RILL $dev $ino $vn $fp $offset chunks"
  off=$offset; rot=1
  chunks
}
