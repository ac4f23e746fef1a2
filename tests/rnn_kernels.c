/* A test driver for templates/c/symgrad_rnn.h: one entry point per direction, the cell chosen by kind
 * (0 rnn tanh, 1 rnn relu, 2 lstm, 3 gru), built as a shared library by tests/test_recurrent.py. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef double real;
#include "symgrad_math.h"
#include "symgrad_rnn.h"

/* h (B, T, H); gates (B, T, G H); states and states2 (B, T, H): the LSTM's c and tanh(c), the GRU's hn (states);
 * scratch: (F + H + 3) G H values. */
void rnn_forward(int kind, int B, int T, int F, int H, const double *wih, const double *whh, const double *bih,
                 const double *bhh, const double *x, double *h, double *gates, double *states, double *states2,
                 double *scratch)
{
    const symgrad_rnn_layer L = {B, T, F, H, 0, 1, wih, whh, bih, bhh};
    if (kind < 2)
        symgrad_rnn_forward(&L, kind, x, h, NULL, scratch);
    else if (kind == 2)
        symgrad_lstm_forward(&L, x, h, NULL, gates, states, states2, scratch);
    else
        symgrad_gru_forward(&L, x, h, NULL, gates, states, scratch);
}

/* The gradients after rnn_forward (gates and states are overwritten with deltas); work: 3 H + (F + H) G H values. */
void rnn_backward(int kind, int B, int T, int F, int H, int bptt, int seq, const double *wih, const double *whh,
                  const double *bih, const double *bhh, const double *x, const double *h, double *gates,
                  double *states, const double *states2, const double *dy, double *work, double *dx, double *dwih,
                  double *dwhh, double *dbih, double *dbhh)
{
    const symgrad_rnn_layer L = {B, T, F, H, bptt, seq, wih, whh, bih, bhh};
    const symgrad_rnn_grads g = {dx, dwih, dwhh, dbih, dbhh};
    if (kind < 2)
        symgrad_rnn_backward(&L, kind, x, h, dy, gates, work, &g);
    else if (kind == 2)
        symgrad_lstm_backward(&L, x, h, gates, states, states2, dy, work, &g);
    else
        symgrad_gru_backward(&L, x, h, gates, states, dy, work, &g);
}

/* The second-order kernels are tested through generated packages (tests/test_graph_second_c.py); this driver only
 * compiles them under the same strict flags, so it takes their addresses. */
void (*const rnn_second_kernels[])(void) = {
    (void (*)(void))symgrad_rnn_jvp, (void (*)(void))symgrad_rnn_rbackward, (void (*)(void))symgrad_lstm_jvp,
    (void (*)(void))symgrad_lstm_rbackward, (void (*)(void))symgrad_gru_jvp, (void (*)(void))symgrad_gru_rbackward};
