# Runs main (with the script's arguments left after its own) in a subshell
# with the channel's stdin moved to fd 3; a
# watchdog ends it when that stdin closes (the channel is gone: sshd closes
# the pipe with the channel or the connection). main's TERM trap ends its
# tail, so no remote process outlives its channel by more than a poll.
exec 3<&0
(
  t=
  trap 'kill $t 2>/dev/null; exit 0' TERM
  main "$@"
) 3<&- &
w=$!
# The process that holds the file open (fd 4): a catch-up may read a file
# gone from its folder through /proc/<pid>/fd/4 while this channel is open.
echo "RILL-PID $w" >&2
( cat <&3 >/dev/null 2>&1; kill "$w" 2>/dev/null ) >/dev/null 2>&1 &
exec 3<&-
wait "$w"
