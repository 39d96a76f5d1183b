# Follows the systemd journal: `journalctl --output=json --follow`, one
# entry per line on stdout (its __CURSOR names it), RILL-TICK on stderr
# every interval however quiet the journal; RILL-NOJOURNAL on stderr where
# the server has no journalctl.
#
# Arguments: PATH DIR NAME INTERVAL FP_BYTES CHUNK_BYTES FROM [OPTION...],
# where FROM is `end` (the entries after the journal's last one, whose
# cursor is said on stderr as `RILL-AFTER <cursor>` so that a restart goes
# on from there; all of them if the journal has none yet: the script waits
# for a first), `all` (every entry the journal holds) or `after:CURSOR`
# (the entries after that one), and each OPTION is
# passed to journalctl as one word (--unit=.., --identifier=..,
# --priority=.., --directory=.., then -- and FIELD=VALUE matches).
p=$1 d=$2 iv=$4 fpb=$5 chunk=$6 from=$7
shift 7
src='' me=''

main() {
  if ! command -v journalctl >/dev/null 2>&1; then
    echo RILL-NOJOURNAL >&2
    exit 1
  fi
  case $from in after:*) ;; *)
    # The journal's last entry, if it has one: journalctl --follow gives up
    # on a journal with none, so wait for a first one.
    while :; do
      # A cursor holds hex digits, ';' and '=' only.
      last=$(journalctl --output=json --no-pager --lines=1 "$@" 2>/dev/null |
        sed -n 's/.*"__CURSOR" *: *"\([^"]*\)".*/\1/p')
      [ -z "$last" ] || break
      nap
      from=all
    done
    if [ "$from" = end ]; then echo "RILL-AFTER $last" >&2; from=after:$last; fi ;;
  esac
  case $from in
    all) set -- --lines=all "$@" ;;
    after:*) set -- "--after-cursor=${from#after:}" "$@" ;;
  esac
  journalctl --output=json --no-pager --follow "$@" &
  t=$!
  while kill -0 "$t" 2>/dev/null; do nap; done
  wait "$t"
}
