/* Rill: compiled and linked by the build to see whether getrandom(2) is
   there (libzmq's CMake `zmq_check_getrandom`). */
#include <sys/random.h>

int main (void)
{
    char buf[4];
    return getrandom (buf, 4, 0) == -1 ? 1 : 0;
}
