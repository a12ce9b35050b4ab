// fakenvml.c: a stand-in libnvidia-ml.so.1 for testing scripts/gpu-check.sh
// where there is no GPU. It answers the NVML calls neocloud's agent and the
// script's independent reader make, for GPUs whose power follows a wave in
// wall-clock time, so that every process that loads it reads the same
// energy counter at the same moment.
//
// NEOCLOUD_FAKE_NVML_GPUS: how many GPUs (default 1).
// NEOCLOUD_FAKE_NVML_SCALE: a factor on the energy counter this process
// reads (default 1): a counter that disagrees with the other readers'.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef int nvmlReturn_t;
enum { OK = 0, ERR_INVALID_ARGUMENT = 2, ERR_NOT_SUPPORTED = 3, ERR_INSUFFICIENT_SIZE = 7 };

struct device { unsigned int index; };
typedef struct device *nvmlDevice_t;
typedef void *nvmlEventSet_t;
typedef struct { unsigned long long total, free, used; } nvmlMemory_t;
typedef struct { unsigned int gpu, memory; } nvmlUtilization_t;

#define MAX_GPUS 8
static struct device devices[MAX_GPUS];

static unsigned int count(void) {
	const char *s = getenv("NEOCLOUD_FAKE_NVML_GPUS");
	int n = s ? atoi(s) : 1;
	return n < 1 ? 1 : n > MAX_GPUS ? MAX_GPUS : (unsigned int)n;
}

// Seconds since an epoch near now, for precision.
static double now(void) {
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)(ts.tv_sec - 1700000000) + ts.tv_nsec / 1e9;
}

// GPU i draws 400 + 250 sin(2πt/7 + i) W; its counter is that power's
// integral, in joules, from a start high enough to stay positive.
static const double base_w = 400, swing_w = 250, period_s = 7;
static double power_w(unsigned int i, double t) { return base_w + swing_w * sin(2 * M_PI * t / period_s + i); }
static double energy_j(unsigned int i, double t) {
	return 1e9 + base_w * t - swing_w * period_s / (2 * M_PI) * cos(2 * M_PI * t / period_s + i);
}

static nvmlReturn_t text(char *buf, unsigned int len, const char *s) {
	if (!buf) return ERR_INVALID_ARGUMENT;
	if (strlen(s) + 1 > len) return ERR_INSUFFICIENT_SIZE;
	strcpy(buf, s);
	return OK;
}

nvmlReturn_t nvmlInit(void) { return OK; }
nvmlReturn_t nvmlInit_v2(void) { return OK; }
nvmlReturn_t nvmlInitWithFlags(unsigned int flags) { (void)flags; return OK; }
nvmlReturn_t nvmlShutdown(void) { return OK; }

const char *nvmlErrorString(nvmlReturn_t r) {
	switch (r) {
	case OK: return "Success";
	case ERR_INVALID_ARGUMENT: return "Invalid Argument";
	case ERR_NOT_SUPPORTED: return "Not Supported";
	case ERR_INSUFFICIENT_SIZE: return "Insufficient Size";
	}
	return "Unknown Error";
}

nvmlReturn_t nvmlSystemGetDriverVersion(char *buf, unsigned int len) { return text(buf, len, "550.0-fake"); }

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *n) {
	if (!n) return ERR_INVALID_ARGUMENT;
	*n = count();
	return OK;
}
nvmlReturn_t nvmlDeviceGetCount(unsigned int *n) { return nvmlDeviceGetCount_v2(n); }

nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int i, nvmlDevice_t *d) {
	if (!d || i >= count()) return ERR_INVALID_ARGUMENT;
	devices[i].index = i;
	*d = &devices[i];
	return OK;
}
nvmlReturn_t nvmlDeviceGetHandleByIndex(unsigned int i, nvmlDevice_t *d) { return nvmlDeviceGetHandleByIndex_v2(i, d); }

nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t d, char *buf, unsigned int len) {
	(void)d;
	return text(buf, len, "NVIDIA H100 80GB HBM3 (fake)");
}

nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t d, char *buf, unsigned int len) {
	char s[64];
	snprintf(s, sizeof s, "GPU-fa4e0000-0000-0000-0000-%012u", d->index);
	return text(buf, len, s);
}

nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t d, nvmlMemory_t *m) {
	(void)d;
	if (!m) return ERR_INVALID_ARGUMENT;
	m->total = 80ULL << 30;
	m->used = 1ULL << 30;
	m->free = m->total - m->used;
	return OK;
}

nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t d, unsigned int *mw) {
	if (!mw) return ERR_INVALID_ARGUMENT;
	*mw = (unsigned int)(power_w(d->index, now()) * 1000);
	return OK;
}

nvmlReturn_t nvmlDeviceGetTotalEnergyConsumption(nvmlDevice_t d, unsigned long long *mj) {
	if (!mj) return ERR_INVALID_ARGUMENT;
	const char *s = getenv("NEOCLOUD_FAKE_NVML_SCALE");
	double scale = s ? atof(s) : 1;
	*mj = (unsigned long long)(energy_j(d->index, now()) * scale * 1000);
	return OK;
}

nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t d, int sensor, unsigned int *c) {
	(void)sensor;
	if (!c) return ERR_INVALID_ARGUMENT;
	*c = 40 + (unsigned int)(power_w(d->index, now()) / 25);
	return OK;
}

nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t d, nvmlUtilization_t *u) {
	(void)d;
	if (!u) return ERR_INVALID_ARGUMENT;
	u->gpu = u->memory = 0;
	return OK;
}

nvmlReturn_t nvmlDeviceGetTotalEccErrors(nvmlDevice_t d, int type, int counter, unsigned long long *n) {
	(void)d, (void)type, (void)counter;
	if (!n) return ERR_INVALID_ARGUMENT;
	*n = 0;
	return OK;
}

nvmlReturn_t nvmlDeviceGetRemappedRows(nvmlDevice_t d, unsigned int *corr, unsigned int *unc, unsigned int *pending, unsigned int *failed) {
	(void)d;
	if (!corr || !unc || !pending || !failed) return ERR_INVALID_ARGUMENT;
	*corr = *unc = *pending = *failed = 0;
	return OK;
}

nvmlReturn_t nvmlDeviceGetCurrentClocksEventReasons(nvmlDevice_t d, unsigned long long *r) {
	(void)d;
	if (!r) return ERR_INVALID_ARGUMENT;
	*r = 0;
	return OK;
}
nvmlReturn_t nvmlDeviceGetCurrentClocksThrottleReasons(nvmlDevice_t d, unsigned long long *r) { return nvmlDeviceGetCurrentClocksEventReasons(d, r); }

// No XID events here, as on GPUs and drivers that do not support them.
nvmlReturn_t nvmlEventSetCreate(nvmlEventSet_t *set) {
	if (!set) return ERR_INVALID_ARGUMENT;
	*set = &devices[0];
	return OK;
}
nvmlReturn_t nvmlDeviceRegisterEvents(nvmlDevice_t d, unsigned long long types, nvmlEventSet_t set) {
	(void)d, (void)types, (void)set;
	return ERR_NOT_SUPPORTED;
}
nvmlReturn_t nvmlEventSetFree(nvmlEventSet_t set) { (void)set; return OK; }
nvmlReturn_t nvmlEventSetWait_v2(nvmlEventSet_t set, void *data, unsigned int ms) {
	(void)set, (void)data, (void)ms;
	return ERR_NOT_SUPPORTED;
}
nvmlReturn_t nvmlEventSetWait(nvmlEventSet_t set, void *data, unsigned int ms) { return nvmlEventSetWait_v2(set, data, ms); }

// It only reads: setting a power limit is refused.
nvmlReturn_t nvmlDeviceGetPowerManagementLimitConstraints(nvmlDevice_t d, unsigned int *min, unsigned int *max) {
	(void)d;
	if (!min || !max) return ERR_INVALID_ARGUMENT;
	*min = 200000;
	*max = 700000;
	return OK;
}
nvmlReturn_t nvmlDeviceSetPowerManagementLimit(nvmlDevice_t d, unsigned int mw) {
	(void)d, (void)mw;
	return ERR_NOT_SUPPORTED;
}
