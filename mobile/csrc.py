"""C text shared by every generated kernel: the vector layer, the runtime and the test main.

``VEC_H`` is one small vector API with two implementations of the *same* operations: NEON
intrinsics on aarch64 and GCC vector extensions elsewhere (so the host build runs the very same
algorithm; on x86-64-v3 the int8 dot step uses AVX2's ``vpmaddwd``, the same arithmetic). Generated kernels only use this API, plain C loops and ``static``/``extern`` data.

int8 dot steps (``vi_dotx``, ``vi_dot16``: 16 byte products added into a ``vi``) fix which
bytes share a lane only up to quarters: the products of bytes ``4q .. 4q+3`` always land in
lanes that ``vi_quarters`` sums into ``out[q]`` (NEON ``sdot``: lane ``q``; GCC vectors:
lanes ``2q`` and ``2q+1``), ``vi_halves2`` sums bytes 0..7 and 8..15, ``vi_hsum`` everything.
So a 16-byte vector may hold 4 rows of 4 weights or 2 rows of 8 (the BCR kernels' packed
narrow blocks), against a replicated input vector (``vb_rep4``, ``vb_rep8``, or a table
lookup ``vb_gather16``), with the same sums on every backend; ``mk_add4`` adds 4 such sums
to 4 consecutive int32 outputs. ``vi_dotlane`` (NEON: ``sdot`` by element) multiplies 4 rows
of 4 weights by one group of 4 inputs, row ``q`` into quarter ``q``: such row sums need no
reduction (``vi_set4`` starts them at a bias, ``vi_quarters`` stores them).

Kernel ABI (every generated ``kernel.c`` defines these, non-static)::

    const int mk_nargs;                 number of arguments (inputs first, then outputs)
    const unsigned long mk_arg_bytes[]; bytes of each argument
    const int mk_arg_out[];             1 for an output argument
    void mk_run(void *const *args);     one call of the kernel

``RUNTIME_C`` adds ``mk_time`` (median timing on the host through ctypes); ``MAIN_C`` is the
harness binary: ``kernel REPEATS in0.bin ... out0.bin ...`` reads the inputs, calls ``mk_run``
REPEATS times and writes the outputs.
"""

VEC_H = r"""/* mk_vec.h: the vector layer of generated kernels (NEON or GCC vector extensions). */
#ifndef MK_VEC_H
#define MK_VEC_H
#include <stdint.h>
#include <string.h>

#if defined(__aarch64__) && defined(__ARM_NEON) && !defined(MK_PORTABLE)
#include <arm_neon.h>
#define MK_NEON 1
typedef float32x4_t vf;                       /* 4 floats */
static inline vf vf_zero(void) { return vdupq_n_f32(0.0f); }
static inline vf vf_dup(float s) { return vdupq_n_f32(s); }
static inline vf vf_load(const float *p) { return vld1q_f32(p); }
static inline void vf_store(float *p, vf v) { vst1q_f32(p, v); }
static inline vf vf_fma(vf acc, vf a, vf b) { return vfmaq_f32(acc, a, b); }
static inline float vf_hsum(vf v) { return vaddvq_f32(v); }
static inline void vf_hsum4(float *out, vf a, vf b, vf c, vf d) {
    vst1q_f32(out, vpaddq_f32(vpaddq_f32(a, b), vpaddq_f32(c, d)));
}

/* 8 floats as two q registers: the row vector of the tiled convolutions. */
typedef struct { float32x4_t lo, hi; } vf8;
static inline vf8 vf8_dup(float s) { vf8 r = {vdupq_n_f32(s), vdupq_n_f32(s)}; return r; }
static inline vf8 vf8_load(const float *p) { vf8 r = {vld1q_f32(p), vld1q_f32(p + 4)}; return r; }
static inline void vf8_store(float *p, vf8 v) { vst1q_f32(p, v.lo); vst1q_f32(p + 4, v.hi); }
/* acc + x * w[lane] (w: 4 weights in a register; the portable path broadcasts wp[lane]). */
#define vf8_fma_lane(acc, x, w, wp, lane) __extension__ ({ vf8 mk_x_ = (x), mk_a_ = (acc); \
    mk_a_.lo = vfmaq_laneq_f32(mk_a_.lo, mk_x_.lo, (w), (lane)); \
    mk_a_.hi = vfmaq_laneq_f32(mk_a_.hi, mk_x_.hi, (w), (lane)); mk_a_; })
/* Keep a loaded vector in registers for its several uses (a no-op here: AArch64 has no
   multiply-add with a memory operand, a load shared by two taps is loaded once already). */
#define vf8_keep(x) ((void)0)

typedef int32x4_t vi;                         /* int32 accumulator of int8 dot products */
typedef int8x16_t vb;                         /* 16 int8 held in a register */
static inline vi vi_zero(void) { return vdupq_n_s32(0); }
/* acc + w[0..15] * x, the products of bytes 4q..4q+3 summed into lane q (sdot). */
static inline vi vi_dotx(vi acc, const int8_t *w, vb x) {
#if defined(__ARM_FEATURE_DOTPROD)
    return vdotq_s32(acc, vld1q_s8(w), x);
#else
    int8x16_t va = vld1q_s8(w);
    int32x4_t lo = vpaddlq_s16(vmull_s8(vget_low_s8(va), vget_low_s8(x)));
    int32x4_t hi = vpaddlq_s16(vmull_high_s8(va, x));
    return vaddq_s32(acc, vpaddq_s32(lo, hi));
#endif
}
static inline vb vb_load(const int8_t *p) { return vld1q_s8(p); }
static inline vi vi_dot16(vi acc, const int8_t *a, const int8_t *b) {
    return vi_dotx(acc, a, vld1q_s8(b));
}
static inline int32_t vi_hsum(vi v) { return vaddvq_s32(v); }
static inline void vi_hsum4(int32_t *out, vi a, vi b, vi c, vi d) {
    vst1q_s32(out, vpaddq_s32(vpaddq_s32(a, b), vpaddq_s32(c, d)));
}
/* out[q] = the products of bytes 4q..4q+3 of every vi_dotx step of `a` (q < 4). */
static inline void vi_quarters(int32_t *out, vi a) { vst1q_s32(out, a); }
/* out = bytes 0..7 and 8..15 of `a`'s steps, then the same of `b`'s. */
static inline void vi_halves2(int32_t *out, vi a, vi b) { vst1q_s32(out, vpaddq_s32(a, b)); }
/* y[k] += s[k] for k < 4, wrapping. */
static inline void mk_add4(int32_t *y, const int32_t *s) {
    vst1q_s32(y, vaddq_s32(vld1q_s32(y), vld1q_s32(s)));
}
/* acc + w[0..15] * bytes 4g..4g+3 of x: 4 rows of 4 weights against one group of 4 inputs,
   row q into quarter q (sdot by element). A macro: the group g (0..3) is an immediate. */
#if defined(__ARM_FEATURE_DOTPROD)
#define vi_dotlane(acc, w, x, g) vdotq_laneq_s32((acc), vld1q_s8(w), (x), (g))
#else
#define vi_dotlane(acc, w, x, g) \
    vi_dotx((acc), (w), vreinterpretq_s8_s32(vdupq_laneq_s32(vreinterpretq_s32_s8(x), (g))))
#endif
/* a + b, wrapping (quarter q of the result: quarter q of a plus quarter q of b). */
static inline vi vi_add(vi a, vi b) { return vaddq_s32(a, b); }
/* A vi whose quarter q holds p[q] (q < 4). */
static inline vi vi_set4(const int32_t *p) { return vld1q_s32(p); }
/* t[idx[k]] for k < 16 (every idx[k] < 16): one table lookup. */
static inline vb vb_gather16(const int8_t *t, const uint8_t *idx) {
    return vqtbl1q_s8(vld1q_s8(t), vld1q_u8(idx));
}
/* p[0..3] four times, p[0..7] twice. */
static inline vb vb_rep4(const int8_t *p) {
    int32_t v; memcpy(&v, p, 4); return vreinterpretq_s8_s32(vdupq_n_s32(v));
}
static inline vb vb_rep8(const int8_t *p) {
    int64_t v; memcpy(&v, p, 8); return vreinterpretq_s8_s64(vdupq_n_s64(v));
}

typedef struct { int32x4_t lo, hi; } va8;     /* 8 int32 accumulators */
static inline va8 va8_load(const int32_t *p) { va8 r = {vld1q_s32(p), vld1q_s32(p + 4)}; return r; }
static inline void va8_store(int32_t *p, va8 v) { vst1q_s32(p, v.lo); vst1q_s32(p + 4, v.hi); }
static inline va8 va8_mla(va8 acc, const int8_t *x, int16_t w) {
    int16x8_t x16 = vmovl_s8(vld1_s8(x));
    acc.lo = vmlal_n_s16(acc.lo, vget_low_s16(x16), w);
    acc.hi = vmlal_high_n_s16(acc.hi, x16, w);
    return acc;
}
#else
typedef float vf __attribute__((vector_size(16)));
static inline vf vf_zero(void) { vf v = {0.0f, 0.0f, 0.0f, 0.0f}; return v; }
static inline vf vf_dup(float s) { vf v = {s, s, s, s}; return v; }
static inline vf vf_load(const float *p) { vf v; memcpy(&v, p, sizeof v); return v; }
static inline void vf_store(float *p, vf v) { memcpy(p, &v, sizeof v); }
static inline vf vf_fma(vf acc, vf a, vf b) { return acc + a * b; }
static inline float vf_hsum(vf v) { return (v[0] + v[1]) + (v[2] + v[3]); }
static inline void vf_hsum4(float *out, vf a, vf b, vf c, vf d) {
    out[0] = vf_hsum(a); out[1] = vf_hsum(b); out[2] = vf_hsum(c); out[3] = vf_hsum(d);
}

/* 8 floats: one AVX register on x86-64-v3 (the row vector of the tiled convolutions). */
typedef float vf8 __attribute__((vector_size(32)));
static inline vf8 vf8_dup(float s) { vf8 v = {s, s, s, s, s, s, s, s}; return v; }
static inline vf8 vf8_load(const float *p) { vf8 v; memcpy(&v, p, sizeof v); return v; }
static inline void vf8_store(float *p, vf8 v) { memcpy(p, &v, sizeof v); }
#define vf8_fma_lane(acc, x, w, wp, lane) ((void)(w), (acc) + (x) * vf8_dup((wp)[(lane)]))
/* Keep a loaded vector in a register for its several uses: GCC otherwise folds the load into
   each multiply-add as a memory operand, one load per use (x86 only; a no-op elsewhere). */
#if defined(__x86_64__) && defined(__AVX__)
#define vf8_keep(x) __asm__("" : "+x"(x))
#else
#define vf8_keep(x) ((void)0)
#endif

/* int32 accumulator of int8 dot products: lane k holds the products of bytes 2k and 2k+1. */
typedef int32_t vi __attribute__((vector_size(32)));
typedef int8_t vb __attribute__((vector_size(16)));   /* 16 int8 held in a register */
typedef int8_t mk_v8b __attribute__((vector_size(8)));
static inline vi vi_zero(void) { vi v = {0, 0, 0, 0, 0, 0, 0, 0}; return v; }
static inline vb vb_load(const int8_t *p) { vb v; memcpy(&v, p, sizeof v); return v; }
#if defined(__AVX2__)
#include <immintrin.h>
/* x86-64-v3: the same 16-element int8 dot step, widened to int16 pairs (vpmaddwd). */
static inline vi vi_dotx(vi acc, const int8_t *w, vb x) {
    __m256i a16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)w));
    __m256i b16 = _mm256_cvtepi8_epi16((__m128i)x);
    return acc + (vi)_mm256_madd_epi16(a16, b16);
}
static inline vb vb_gather16(const int8_t *t, const uint8_t *idx) {
    return (vb)_mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)t),
                                _mm_loadu_si128((const __m128i *)idx));
}
#else
static inline vi vi_dotx(vi acc, const int8_t *w, vb x) {
    for (int k = 0; k < 8; k++)
        acc[k] = (int32_t)((uint32_t)acc[k] + (uint32_t)(w[2 * k] * x[2 * k]
                                                         + w[2 * k + 1] * x[2 * k + 1]));
    return acc;
}
static inline vb vb_gather16(const int8_t *t, const uint8_t *idx) {
    vb v;
    for (int k = 0; k < 16; k++) v[k] = t[idx[k]];
    return v;
}
#endif
static inline vi vi_dot16(vi acc, const int8_t *a, const int8_t *b) {
    return vi_dotx(acc, a, vb_load(b));
}
static inline int32_t vi_hsum(vi v) {
    uint32_t s = 0;
    for (int k = 0; k < 8; k++) s += (uint32_t)v[k];
    return (int32_t)s;
}
static inline void vi_hsum4(int32_t *out, vi a, vi b, vi c, vi d) {
    out[0] = vi_hsum(a); out[1] = vi_hsum(b); out[2] = vi_hsum(c); out[3] = vi_hsum(d);
}
/* Sum of lanes k .. k+n-1, wrapping. */
static inline int32_t mk_vi_lanes(vi v, int k, int n) {
    uint32_t s = 0;
    for (int i = k; i < k + n; i++) s += (uint32_t)v[i];
    return (int32_t)s;
}
static inline void vi_quarters(int32_t *out, vi a) {
    for (int q = 0; q < 4; q++) out[q] = mk_vi_lanes(a, 2 * q, 2);
}
static inline void vi_halves2(int32_t *out, vi a, vi b) {
    out[0] = mk_vi_lanes(a, 0, 4); out[1] = mk_vi_lanes(a, 4, 4);
    out[2] = mk_vi_lanes(b, 0, 4); out[3] = mk_vi_lanes(b, 4, 4);
}
typedef uint32_t mk_v4u __attribute__((vector_size(16)));
static inline void mk_add4(int32_t *y, const int32_t *s) {
    mk_v4u a, b;
    memcpy(&a, y, 16); memcpy(&b, s, 16);
    a += b;
    memcpy(y, &a, 16);
}
static inline vi vi_dotlane(vi acc, const int8_t *w, vb x, int g) {
    vb b;
    for (int k = 0; k < 16; k++) b[k] = x[4 * g + (k & 3)];
    return vi_dotx(acc, w, b);
}
typedef uint32_t mk_v8u __attribute__((vector_size(32)));
static inline vi vi_add(vi a, vi b) { return (vi)((mk_v8u)a + (mk_v8u)b); }
static inline vi vi_set4(const int32_t *p) {
    vi v = {p[0], 0, p[1], 0, p[2], 0, p[3], 0};
    return v;
}
static inline vb vb_rep4(const int8_t *p) {
    vb v;
    for (int k = 0; k < 16; k++) v[k] = p[k & 3];
    return v;
}
static inline vb vb_rep8(const int8_t *p) {
    vb v;
    for (int k = 0; k < 16; k++) v[k] = p[k & 7];
    return v;
}

typedef vi va8;
static inline va8 va8_load(const int32_t *p) { va8 v; memcpy(&v, p, sizeof v); return v; }
static inline void va8_store(int32_t *p, va8 v) { memcpy(p, &v, sizeof v); }
#if defined(__AVX2__)
/* x86-64-v3: vpmovsxbd straight from memory (GCC splits the generic conversion into scalars). */
static inline va8 va8_mla(va8 acc, const int8_t *x, int16_t w) {
    __m256i x32 = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)x));
    return acc + (va8)_mm256_mullo_epi32(x32, _mm256_set1_epi32(w));
}
#else
static inline va8 va8_mla(va8 acc, const int8_t *x, int16_t w) {
    mk_v8b xv; memcpy(&xv, x, 8);
    return acc + __builtin_convertvector(xv, va8) * (int32_t)w;
}
#endif
#endif

/* Integer rules of ir.fixedpoint: round half up shifts, symmetric saturation, int32 wrap. */
static inline int32_t mk_wrap_add(int32_t a, int32_t b) { return (int32_t)((uint32_t)a + (uint32_t)b); }
static inline int64_t mk_round_shift(int64_t v, int s) {
    if (s > 0) return (v + ((int64_t)1 << (s - 1))) >> s;
    return v * ((int64_t)1 << (-s));
}
static inline int64_t mk_sat(int64_t v, int bits) {
    int64_t hi = ((int64_t)1 << (bits - 1)) - 1;
    return v > hi ? hi : (v < -hi ? -hi : v);
}
#endif
"""

RUNTIME_C = r"""/* mk_runtime.c: host timing entry point (loaded with ctypes). */
#include <time.h>
extern void mk_run(void *const *args);
static double mk_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}
/* samples[k] = seconds per call, averaged over `inner` calls; `outer` samples. */
void mk_time(void *const *args, long inner, long outer, double *samples) {
    for (long k = 0; k < outer; k++) {
        double t0 = mk_now();
        for (long i = 0; i < inner; i++) mk_run(args);
        samples[k] = (mk_now() - t0) / (double)inner;
    }
}
"""

MAIN_C = r"""/* mk_main.c: run a kernel on argument files: kernel REPEATS in... out... */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
extern const int mk_nargs;
extern const unsigned long mk_arg_bytes[];
extern const int mk_arg_out[];
extern void mk_run(void *const *args);
int main(int argc, char **argv) {
    if (argc != mk_nargs + 2) { fprintf(stderr, "usage: %s REPEATS ARG...\n", argv[0]); return 2; }
    long reps = atol(argv[1]);
    void *args[64];
    for (int i = 0; i < mk_nargs; i++) {
        unsigned long n = (mk_arg_bytes[i] + 63) / 64 * 64;
        args[i] = aligned_alloc(64, n ? n : 64);
        memset(args[i], 0, n ? n : 64);
        if (!mk_arg_out[i]) {
            FILE *f = fopen(argv[i + 2], "rb");
            if (!f || fread(args[i], 1, mk_arg_bytes[i], f) != mk_arg_bytes[i]) {
                fprintf(stderr, "cannot read %s\n", argv[i + 2]); return 1;
            }
            fclose(f);
        }
    }
    for (long r = 0; r < reps; r++) mk_run(args);
    for (int i = 0; i < mk_nargs; i++) {
        if (!mk_arg_out[i]) continue;
        FILE *f = fopen(argv[i + 2], "wb");
        if (!f || fwrite(args[i], 1, mk_arg_bytes[i], f) != mk_arg_bytes[i]) {
            fprintf(stderr, "cannot write %s\n", argv[i + 2]); return 1;
        }
        fclose(f);
    }
    return 0;
}
"""
