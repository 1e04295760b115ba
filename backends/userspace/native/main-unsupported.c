/* Non-Linux builds: the program exists and says why it cannot run (TUN and the socket options it uses are Linux's). */
#include <stdio.h>

int main(void) {
  printf("{\"error\":{\"code\":\"ENOSYS\",\"message\":\"the userspace datapath needs Linux (TUN devices, recvmmsg, UDP GSO)\"}}\n");
  fprintf(stderr, "twill-dataplane: the userspace datapath needs Linux (TUN devices, recvmmsg, UDP GSO)\n");
  return 1;
}
