#include <torch/extension.h>

#include "kernels.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "CPU kernels of distillnerf: submanifold convolution (distillnerf.submanifold), inference ray march "
            "(distillnerf.renderer)";
  m.def("conv_forward", &conv_forward, "features [V,Ci], weight [27,Ci,Co], neighbours [V,27] int32, bias [Co] or "
        "None, relu -> [V,Co]", py::arg("features"), py::arg("weight"), py::arg("neighbours"),
        py::arg("bias") = py::none(), py::arg("relu") = false);
  m.def("conv_backward_weight", &conv_backward_weight,
        "features, grad [V,Co], neighbours transposed [27,V] -> [27,Ci,Co]");
  m.def("neighbour_table", &neighbour_table, "sorted keys [V] int64, indices [V,4] int32, resolution -> [V,27]");
  m.def("march", &march, "no-grad ray march -> (weights, rows, opacity, weighted distance, channel sums)");
}
