/* Internal header of src/sampling/ for the tests: schedules (schedule.h) and the sampler object
 * with its method table (sampler.h). */
#ifndef PNDM_SCHEDULER_H
#define PNDM_SCHEDULER_H

#include "schedule.h"
#include "sampler.h"

#endif
