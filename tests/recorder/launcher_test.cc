#include "recorder/launcher.h"

#include <sched.h>

#include <cstdlib>

#include "tests/catch.h"

using namespace genie::recorder;

namespace {

cpu_set_t Affinity() {
  cpu_set_t s;
  CPU_ZERO(&s);
  REQUIRE(::sched_getaffinity(0, sizeof(s), &s) == 0);
  return s;
}

}  // namespace

TEST_CASE("SplitCpus keeps the last CPU for the runtime and moves genie there only while asked") {
  const cpu_set_t allowed = Affinity();
  const int count = CPU_COUNT(&allowed);

  ::setenv("GENIE_CPU_SPLIT", "0", 1);
  CHECK_FALSE(SplitCpus().has_value());
  HelperBesideRuntime(true);  // no split: nothing moves
  cpu_set_t now = Affinity();
  CHECK(CPU_EQUAL(&now, &allowed));

  // Unset: only on two or three CPUs.
  ::unsetenv("GENIE_CPU_SPLIT");
  CHECK(SplitCpus().has_value() == (count == 2 || count == 3));

  ::setenv("GENIE_CPU_SPLIT", "1", 1);
  std::optional<CpuSplit> split = SplitCpus();
  ::unsetenv("GENIE_CPU_SPLIT");
  if (count < 2) {
    CHECK_FALSE(split.has_value());  // one CPU: nothing to split
    return;
  }
  REQUIRE(split.has_value());
  int last = -1;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu)
    if (CPU_ISSET(cpu, &allowed)) last = cpu;
  CHECK(CPU_COUNT(&split->helper) == 1);
  CHECK(CPU_ISSET(last, &split->helper));
  CHECK(CPU_COUNT(&split->program) == count - 1);
  CHECK_FALSE(CPU_ISSET(last, &split->program));
  cpu_set_t both;
  CPU_OR(&both, &split->program, &split->helper);
  CHECK(CPU_EQUAL(&both, &allowed));

  now = Affinity();
  CHECK(CPU_EQUAL(&now, &allowed));  // SplitCpus moves nothing
  HelperBesideRuntime(true);
  now = Affinity();
  CHECK(CPU_EQUAL(&now, &split->helper));
  HelperBesideRuntime(true);  // already there
  now = Affinity();
  CHECK(CPU_EQUAL(&now, &split->helper));
  HelperBesideRuntime(false);
  now = Affinity();
  CHECK(CPU_EQUAL(&now, &allowed));
}
