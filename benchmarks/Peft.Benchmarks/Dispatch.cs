using System.Diagnostics;
using Peft;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Peft.Benchmarks;

/// <summary>
/// What code specialised to one declared LoRA could save (section 15, or <c>--dispatch</c> alone): the general layer
/// (<see cref="AdaptedLinear"/>'s per-layer plan) against the same forward written out by hand, <c>y = x Wᵀ + b</c> then
/// <c>y += s (x Aᵀ) Bᵀ</c> in place, and against the base product alone; no_grad, from one decoding row to 1024 rows.
/// </summary>
internal static class DispatchProbe
{
    public static IEnumerable<(string Name, string Value, string Note)> Results(int rounds)
    {
        foreach (var (rows, width, calls) in new (long, long, int)[] { (1, 512, 2000), (64, 512, 400), (1024, 1024, 20) })
        {
            manual_seed(1);
            var linear = nn.Linear(width, width);
            foreach (var p in linear.parameters()) p.requires_grad = false;
            using var layer = AdaptedLinear.Wrap(linear, "q").WithAdapter("default", new LoRAOptions(Rank: 8, Alpha: 16));
            var lora = (LoRAAdapter)layer.GetAdapter("default");
            using (no_grad()) lora.B.normal_(0, 0.02);
            var (weight, bias, a, b, s) = (layer.Weight, layer.Bias!, lora.A, lora.B, (float)lora.Scaling);
            using var x = randn(rows, width);
            using var _ = no_grad();
            Action Repeat(Action once) => () =>
            {
                for (int i = 0; i < calls; i++) once();
            };

            var times = Timing.Interleaved(rounds,
                ("general", Repeat(() => layer.call(x).Dispose())),
                ("by hand", Repeat(() =>
                {
                    using var y = F.linear(x, weight, bias);
                    using var h = x.matmul(a.t());
                    y.addmm_(h, b.t(), 1, s);
                })),
                ("base", Repeat(() => F.linear(x, weight, bias).Dispose())));
            string shape = $"{rows} x Linear({width}, {width}), LoRA r=8, no_grad";
            yield return ($"{shape}: general layer, per call", $"{Timing.Median(times["general"]) * 1000 / calls:F1} µs", $"median of {rounds} x {calls} calls");
            yield return ($"**{shape}: general layer / written out by hand**", Timing.Ratio(times["general"], times["by hand"]), "same run");
            yield return ($"{shape}: written out by hand / base product alone", Timing.Ratio(times["by hand"], times["base"]), "same run");
        }
    }
}
