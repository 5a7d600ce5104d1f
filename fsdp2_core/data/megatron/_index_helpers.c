/* Sequential index builders that do not vectorise: compiled on first use (see native.py).
 * Written for this project; the arithmetic follows the order of operations that Megatron-LM's
 * index builders use, so that the floating point results are identical. */
#include <stdint.h>
#include <stdlib.h>

/* Blend `num_datasets` sources to `size` samples: at every step take the source whose
 * achieved count lags its weight the most (ties: lowest index). */
void blend_weighted(int16_t *dataset_index, int64_t *dataset_sample_index,
                    const double *weights, int32_t num_datasets, int64_t size,
                    int64_t *counts /* num_datasets, zeroed */) {
    for (int64_t step = 0; step < size; ++step) {
        double x = step > 1 ? (double)step : 1.0;
        int32_t best = 0;
        double best_err = weights[0] * x - (double)counts[0];
        for (int32_t d = 1; d < num_datasets; ++d) {
            double err = weights[d] * x - (double)counts[d];
            if (err > best_err) { best_err = err; best = d; }
        }
        dataset_index[step] = (int16_t)best;
        dataset_sample_index[step] = counts[best];
        counts[best] += 1;
    }
}

/* Take exactly sizes[d] samples from every source, interleaved in proportion to the sizes. */
void blend_exhaustive(int16_t *dataset_index, int64_t *dataset_sample_index,
                      const int64_t *sizes, int32_t num_datasets,
                      int64_t *counts, double *weights, uint8_t *spent) {
    int64_t total = 0;
    int32_t live = 0;
    for (int32_t d = 0; d < num_datasets; ++d) { total += sizes[d]; counts[d] = 0; spent[d] = 0; }
    for (int32_t d = 0; d < num_datasets; ++d) {
        weights[d] = (double)sizes[d] / (double)total;
        live += 1;
    }
    int64_t step = 0;
    while (live > 0) {
        double x = step > 1 ? (double)step : 1.0;
        int32_t best = -1;
        double best_err = 0.0;
        for (int32_t d = 0; d < num_datasets; ++d) {
            if (spent[d]) continue;
            double err = weights[d] * x - (double)counts[d];
            if (best < 0 || err > best_err) { best_err = err; best = d; }
        }
        dataset_index[step] = (int16_t)best;
        dataset_sample_index[step] = counts[best];
        counts[best] += 1;
        if ((double)sizes[best] - (double)counts[best] == 0.0) { spent[best] = 1; live -= 1; }
        step += 1;
    }
}

/* Sample starts: sample k ends on flat token t = k * seq_length + extra - 1 of the documents of
 * doc_index laid end to end; record (position in doc_index, offset + 1 - extra) of that token,
 * or the end of the last document when the stream runs out (partial last sample). */
#define SAMPLE_INDEX(NAME, T)                                                                   \
void NAME(const int32_t *lengths, const int32_t *doc_index, int64_t num_docs,                 \
          int32_t seq_length, int64_t num_samples, int32_t extra, T *out) {                   \
    int64_t pos = 0, doc_start = 0;                                                             \
    int64_t doc_end = num_docs > 0 ? (int64_t)lengths[doc_index[0]] : 0;                        \
    out[0] = 0; out[1] = 0;                                                                     \
    for (int64_t k = 1; k <= num_samples; ++k) {                                                \
        int64_t t = k * (int64_t)seq_length + extra - 1;                                        \
        while (pos < num_docs - 1 && doc_end <= t) {                                            \
            ++pos; doc_start = doc_end; doc_end += lengths[doc_index[pos]];                     \
        }                                                                                       \
        if (doc_end > t) {                                                                      \
            out[2 * k] = (T)pos; out[2 * k + 1] = (T)(t - doc_start + 1 - extra);               \
        } else {                                                                                \
            out[2 * k] = (T)(num_docs - 1);                                                     \
            out[2 * k + 1] = (T)(lengths[doc_index[num_docs - 1]] - extra);                     \
        }                                                                                       \
    }                                                                                           \
}
SAMPLE_INDEX(sample_index_int32, int32_t)
SAMPLE_INDEX(sample_index_int64, int64_t)
