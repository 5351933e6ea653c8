// Decoding of low-rank binary keep-masks.
#include "bind_util.h"

#include "lowrank_mask.h"

namespace sc {
namespace bindings {

void register_lowrank(py::module_& m) {
    m.def(
        "lowrank_decode",
        [](py::object left_obj, py::object right_obj, int64_t rows, int64_t cols, int64_t tile_rows, int64_t tile_cols,
           int rank) {
            const LowRankGeometry geo{rows, cols, tile_rows, tile_cols, rank};
            check_lowrank_geometry(geo);
            auto left = require_array<uint64_t>(left_obj, "left", 2);
            auto right = require_array<uint64_t>(right_obj, "right", 3);
            require_len(left, 0, geo.col_blocks(), "left");
            require_len(left, 1, rows, "left");
            require_len(right, 0, geo.row_blocks(), "right");
            require_len(right, 1, rank, "right");
            require_len(right, 2, geo.row_words(), "right");
            const uint64_t* l = left.data();
            for (int64_t i = 0; i < left.size(); ++i)
                if (rank < 64 && (l[i] >> rank))
                    throw std::invalid_argument("left factor words use bits beyond the rank");
            py::array_t<uint64_t> out((rows * cols + 63) / 64);
            {
                py::gil_scoped_release release;
                lowrank_decode(geo, left.data(), right.data(), out.mutable_data());
            }
            return out;
        },
        py::arg("left"), py::arg("right"), py::arg("rows"), py::arg("cols"), py::arg("tile_rows"), py::arg("tile_cols"),
        py::arg("rank"),
        "Keep-mask bits of a tiled low-rank binary index: left (col blocks, rows) rank-bit words, right (row blocks, "
        "rank, row words) full-width rows.");
}

}  // namespace bindings
}  // namespace sc
