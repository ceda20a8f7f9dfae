// ResponseRank loss on CPU as one autograd node with a C++ backward.
//
// Same maths as rlpref.losses._FastRR: with W = exp(d) laid out weakest-first per stratum (row),
// C = row prefix sums of W, loss = (sum log(1 + C) - sum d) / N. The eager version spends most of its
// time in per-op dispatch, the Python backward callback and layout copies (cat, flip); here the
// gather + prefix sum and the whole backward are single passes over the rows, and exp / log1p stay
// torch's vectorised kernels.
#include <ATen/AccumulateType.h>
#include <torch/extension.h>

#include <vector>

namespace {

using torch::Tensor;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Sums accumulate in double for float, as torch's CPU cumsum does.
template <typename T>
using acc_t = at::acc_type<T, /*is_cuda=*/false>;

// Row prefix sums of w gathered through rev_index (padding index n adds 0).
template <typename T>
void prefix_sums(const T* w, const int64_t* idx, T* c, int64_t rows, int64_t width, int64_t n) {
  at::parallel_for(0, rows, 2048, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      acc_t<T> s = 0;
      const int64_t* ir = idx + r * width;
      T* cr = c + r * width;
      for (int64_t m = 0; m < width; ++m) {
        const int64_t i = ir[m];
        if (i < n) s += w[i];
        cr[m] = static_cast<T>(s);
      }
    }
  });
}

// dL/dd_i = scale * (w_i * sum_{k >= slot(i)} 1 / (1 + C_k) - 1): a suffix sum per row, strongest first,
// so the smallest terms are added first. RankPlan validates that every item has exactly one slot.
template <typename T>
void grad_d(const T* w, const T* c, const int64_t* idx, T* gd, int64_t rows, int64_t width, int64_t n, double scale) {
  at::parallel_for(0, rows, 2048, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      acc_t<T> acc = 0;
      const int64_t* ir = idx + r * width;
      const T* cr = c + r * width;
      for (int64_t m = width - 1; m >= 0; --m) {
        acc += acc_t<T>(1) / (acc_t<T>(1) + cr[m]);
        const int64_t i = ir[m];
        if (i < n) gd[i] = static_cast<T>(scale * (w[i] * acc - 1));
      }
    }
  });
}

class RRFunction : public torch::autograd::Function<RRFunction> {
 public:
  static Tensor forward(AutogradContext* ctx, const Tensor& u_chosen, const Tensor& u_rejected,
                        const Tensor& rev_index) {
    const int64_t n = u_chosen.size(0);
    const int64_t rows = rev_index.size(0), width = rev_index.size(1);
    Tensor d = at::sub(u_chosen, u_rejected);
    Tensor w = d.exp();
    Tensor c = at::empty({rows, width}, d.options());
    AT_DISPATCH_FLOATING_TYPES(d.scalar_type(), "rr_prefix_sums", [&] {
      prefix_sums<scalar_t>(w.data_ptr<scalar_t>(), rev_index.data_ptr<int64_t>(), c.data_ptr<scalar_t>(), rows,
                            width, n);
    });
    ctx->save_for_backward({w, c, rev_index});
    return at::log1p(c).sum().sub_(d.sum()).div_(static_cast<double>(n));
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    TORCH_CHECK(!at::GradMode::is_enabled(), "rr does not support double backward (create_graph=True)");
    auto saved = ctx->get_saved_variables();
    const Tensor& w = saved[0];
    const Tensor& c = saved[1];
    const Tensor& rev_index = saved[2];
    const int64_t n = w.size(0);
    Tensor gd = at::zeros_like(w);
    const double scale = grad_outputs[0].item<double>() / static_cast<double>(n);
    AT_DISPATCH_FLOATING_TYPES(w.scalar_type(), "rr_grad", [&] {
      grad_d<scalar_t>(w.data_ptr<scalar_t>(), c.data_ptr<scalar_t>(), rev_index.data_ptr<int64_t>(),
                       gd.data_ptr<scalar_t>(), c.size(0), c.size(1), n, scale);
    });
    return {gd, ctx->needs_input_grad(1) ? gd.neg() : Tensor(), Tensor()};
  }
};

Tensor rr_loss_cpu(const Tensor& u_chosen, const Tensor& u_rejected, const Tensor& rev_index) {
  TORCH_CHECK(u_chosen.device().is_cpu() && u_rejected.device().is_cpu() && rev_index.device().is_cpu(),
              "the compiled rr kernel runs on CPU tensors only");
  TORCH_CHECK(u_chosen.dim() == 1 && u_chosen.sizes() == u_rejected.sizes(), "u_chosen, u_rejected must be [N]");
  TORCH_CHECK(u_chosen.scalar_type() == u_rejected.scalar_type(), "u_chosen and u_rejected must share a dtype");
  TORCH_CHECK(rev_index.dim() == 2 && rev_index.scalar_type() == at::kLong && rev_index.numel() >= u_chosen.size(0),
              "rev_index must be the long [S, M] layout of a RankPlan built by rlpref.losses.make_rank_plan");
  return RRFunction::apply(u_chosen.contiguous(), u_rejected.contiguous(), rev_index.contiguous());
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("rr_loss", &rr_loss_cpu, "ResponseRank loss (CPU, C++ forward and backward)");
}
