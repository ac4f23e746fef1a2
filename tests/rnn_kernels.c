/* A test driver for templates/c/symgrad_rnn.h: one entry point per direction, the cell chosen by kind
 * (0 rnn tanh, 1 rnn relu, 2 lstm, 3 gru), built as a shared library by tests/test_recurrent.py. */
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "symgrad_rnn.h"

void rnn_forward(int kind, int B, int T, int F, int H, const double *wih, const double *whh, const double *bih,
                 const double *bhh, const double *x, double *h, double *gates, double *states)
{
    const symgrad_rnn_layer L = {B, T, F, H, 0, wih, whh, bih, bhh};
    if (kind < 2)
        symgrad_rnn_forward(&L, kind, x, h);
    else if (kind == 2)
        symgrad_lstm_forward(&L, x, h, gates, states);
    else
        symgrad_gru_forward(&L, x, h, gates, states);
}

void rnn_backward(int kind, int B, int T, int F, int H, int bptt, const double *wih, const double *whh, const double *bih,
                  const double *bhh, const double *x, const double *h, const double *gates, const double *states,
                  const double *dy, int seq, double *work, double *dx, double *dwih, double *dwhh, double *dbih,
                  double *dbhh)
{
    const symgrad_rnn_layer L = {B, T, F, H, bptt, wih, whh, bih, bhh};
    const symgrad_rnn_grads g = {dx, dwih, dwhh, dbih, dbhh};
    if (kind < 2)
        symgrad_rnn_backward(&L, kind, x, h, dy, seq, work, &g);
    else if (kind == 2)
        symgrad_lstm_backward(&L, x, h, gates, states, dy, seq, work, &g);
    else
        symgrad_gru_backward(&L, x, h, gates, states, dy, seq, work, &g);
}
