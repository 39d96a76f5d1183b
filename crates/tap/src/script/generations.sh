# Lists the log's rotated generations in its folder, oldest first, with
# what a finish needs to find each again:
#
#   G <dev> <ino> <vlen> <vfp> <name>   vlen/vfp: the first bytes of what
#                                       it decompresses to
#   RILL-END
#
# A generation is a regular file of DIR whose name is NAME followed by '.'
# or '-' and more (app.log.1, app.log.2.gz, app.log-20261201), and not
# named more closely after another log followed there (OTHER). A
# compressed one (.gz, .zst, .xz, .bz2) is listed only where the server has
# its tool; one whose name holds a newline is not listed.
#
# Arguments: PATH DIR NAME INTERVAL FP_BYTES CHUNK_BYTES [OTHER...]
p=$1 d=$2 b=$3 iv=$4 fpb=$5 chunk=$6
shift 6
src='' me=''
nl='
'

main() {
  # Names in age order, oldest first (an insertion by -nt; a folder holds
  # a few dozen generations at most).
  sorted=''
  set +f
  for c in "$d/$b".* "$d/$b"-*; do
    [ -f "$c" ] || continue
    cn=${c##*/}
    case $cn in *"$nl"*) continue ;; esac
    for o in "$@"; do
      case $cn in "$o"*) [ "${#o}" -le "${#b}" ] || continue 2 ;; esac
    done
    before='' after=$sorted placed=
    while [ -n "$after" ]; do
      first=${after%%"$nl"*}; after=${after#*"$nl"}
      # shellcheck disable=SC3013 # -nt is in dash, bash, BusyBox and BSD sh
      if [ -z "$placed" ] && [ "$d/$first" -nt "$c" ]; then
        before=$before$cn$nl; placed=1
      fi
      before=$before$first$nl
    done
    [ -n "$placed" ] || before=$before$cn$nl
    sorted=$before
  done
  set -f
  while [ -n "$sorted" ]; do
    cn=${sorted%%"$nl"*}; sorted=${sorted#*"$nl"}
    z=''
    case $cn in
      *.gz) tool=gzip ;; *.zst) tool=zstd ;; *.xz) tool=xz ;; *.bz2) tool=bzip2 ;; *) tool= ;;
    esac
    if [ -n "$tool" ]; then
      command -v "$tool" >/dev/null 2>&1 || { echo "RILL-NOTOOL $tool" >&2; continue; }
      z="$tool -dc"
    fi
    ident "$d/$cn"
    echo "G $dev $ino $vn $fp $cn"
  done
  z=''
  echo RILL-END
  hold
}
