# Lists, once per interval, the regular files a log's pattern may match:
# the tap matches them itself (nothing here expands a pattern, so a name is
# only ever a name).
#
# Arguments: ROOT DIR NAME INTERVAL FP_BYTES CHUNK_BYTES DEPTH LIMIT PATTERN,
# where ROOT is the folder to list, DEPTH how many levels below it (`any`: no
# limit), LIMIT the most files one pass lists and PATTERN, unless empty, a
# `find -name` pattern the names must match (a first filter only: the tap
# matches what is listed). Each pass prints on stdout:
#
#   RILL-LIST
#   N <ino> <size> <vlen> <vfp> <path>   a file this script had not listed
#                                        under that name and inode before
#   S <ino> <path>                       one listed so in the pass before
#   RILL-END <newline> <cut>             <newline> 1: files whose name holds
#                                        a newline were left out; <cut> 1:
#                                        more than LIMIT files, the rest left out
# common.sh's readers are not used here; their variables are set all the same.
p=$1 d=$2 iv=$4 fpb=$5 chunk=$6 depth=$7 limit=$8 pat=$9 src='' me=''
root=$p
nl='
'

main() {
  prev=$nl
  while :; do
    echo RILL-LIST
    now=$nl odd=0 cut=0
    if [ -d "$root" ]; then
      if [ "$depth" = any ]; then set --; else set -- -maxdepth "$depth"; fi
      if [ -n "$pat" ]; then set -- "$@" -name "$pat"; fi
      if [ -n "$(find "$root" "$@" -type f -name "*$nl*" 2>/dev/null | head -c 1)" ]; then odd=1; fi
      all=$(find "$root" "$@" -type f ! -name "*$nl*" -exec ls -di {} + 2>/dev/null | head -n "$((limit + 1))")
      n=0
      while IFS= read -r l; do
        [ -n "$l" ] || continue
        n=$((n + 1))
        if [ "$n" -gt "$limit" ]; then cut=1; break; fi
        # `ls -di`: the inode, right-aligned, one space, the name as it is.
        l=${l#"${l%%[! ]*}"}
        ino=${l%% *} f=${l#* }
        case $prev in
          *"$nl$ino $f$nl"*) echo "S $ino $f" ;;
          *)
            s=$(wc -c 2>/dev/null < "$f"); s=$((s + 0))
            vn=$s; [ "$vn" -gt "$fpb" ] && vn=$fpb
            echo "N $ino $s $vn $(fpof "$f" "$vn") $f" ;;
        esac
        now=$now$ino' '$f$nl
      done <<EOF
$all
EOF
    fi
    prev=$now
    echo "RILL-END $odd $cut"
    nap
  done
}
