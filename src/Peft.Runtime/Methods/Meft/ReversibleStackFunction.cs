using TorchSharp;
using static TorchSharp.torch;

namespace Peft;

/// <summary>
/// A range of MEFT's reversible blocks as one autograd node (the authors' <c>RevBackProp</c>). The forward runs the blocks
/// without recording a graph and keeps only the top output <c>(y₂, y₁)</c>. The backward walks the blocks top down: it
/// re-runs <c>G(y₁)</c> with G's seed and backpropagates <c>dy₂</c> through it (parameter gradients accumulate, <c>y₁</c>
/// gets its share), rebuilds <c>x₂ = (y₂ − G(y₁))/β</c>, re-runs <c>F(x₂)</c> with F's seed and backpropagates the total
/// <c>dy₁</c>, rebuilds <c>x₁ = (y₁ − F(x₂))/λ</c>, and passes <c>(λ·dy₁, β·dy₂ + dx₂)</c> down. The rebuilding runs in at
/// least float32 (dividing by 0.1 amplifies half-precision error). Only one block's activations are alive at a time.
/// </summary>
internal sealed class ReversibleStackFunction : autograd.SingleTensorFunction<ReversibleStackFunction>
{
    [ThreadStatic]
    private static List<Tensor>? _returned;

    /// <inheritdoc />
    public override string Name => nameof(ReversibleStackFunction);

    /// <summary>Runs the range as one node; the input always takes part in the graph, because the adapters' parameters
    /// inside the range are not inputs of the node and only its backward reaches them.</summary>
    /// <param name="pair">The doubled stream entering the range [..., 2d].</param>
    /// <param name="run">The range and what its backward needs.</param>
    /// <returns>The doubled stream leaving the range.</returns>
    public static Tensor Apply(Tensor pair, ReversibleRun run)
    {
        if (!pair.requires_grad) pair = pair.detach().requires_grad_(true);
        return apply(pair, run);
    }

    /// <inheritdoc />
    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var pair = (Tensor)vars[0];
        var run = (ReversibleRun)vars[1];
        ctx.save_data("run", run);
        using var noGrad = no_grad();
        var current = pair.detach();
        run.Inputs = run.Runner.MeasureReconstruction ? [] : null;
        for (int i = run.Start; i < run.End; i++)
        {
            run.Inputs?.Add(current.clone().DetachFromDisposeScope());
            var next = run.Runner.Step(run.Call, i, current, run.Seeds[i - run.Start]);
            if (i > run.Start) current.Dispose();
            current = next;
        }

        run.Top = current.detach().DetachFromDisposeScope();
        return current;
    }

    /// <inheritdoc />
    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad_output)
    {
        if (_returned is { Count: > 0 } previous)
        {
            // TorchSharp copies each returned gradient into the graph after backward returns (as in DequantizingLinearFunction).
            foreach (var t in previous) t.Dispose();
            previous.Clear();
        }

        var run = (ReversibleRun)ctx.get_data("run");
        var cpuState = get_rng_state();
        var errors = new double[run.End - run.Start];
        Tensor dy;
        using (var scope = NewDisposeScope())
        {
            var y = run.Top ?? throw new InvalidOperationException("MEFT's reversible backward ran twice on one forward; run the forward again.");
            dy = grad_output.detach();
            for (int i = run.End - 1; i >= run.Start; i--)
            {
                using var blockScope = NewDisposeScope();
                var (x, dx) = Block(run, i, y, dy);
                if (run.Inputs is { } inputs)
                {
                    using (no_grad()) errors[i - run.Start] = (x.to_type(ScalarType.Float64) - inputs[i - run.Start].to_type(ScalarType.Float64)).abs().max().item<double>();
                }

                y = x.MoveToOuterDisposeScope();
                dy = dx.MoveToOuterDisposeScope();
            }

            dy.MoveToOuterDisposeScope();
        }

        set_rng_state(cpuState);
        cpuState.Dispose();
        run.Top.Dispose();
        run.Top = null;
        if (run.Inputs is { } kept)
        {
            foreach (var t in kept) t.Dispose();
            run.Runner.ReconstructionErrors = errors;
        }

        run.Runner.ReversibleBackwards++;
        _returned ??= [];
        _returned.Add(dy);
        return [dy, null!];
    }

    /// <summary>Block <paramref name="i"/>'s input and the gradient at it, from its output and the gradient at that.</summary>
    private static (Tensor X, Tensor Dx) Block(ReversibleRun run, int i, Tensor y, Tensor dy)
    {
        var runner = run.Runner;
        var config = runner.Config;
        var seeds = run.Seeds[i - run.Start];
        var outputs = y.chunk(2, -1);
        var grads = dy.chunk(2, -1);
        var (y2, y1) = (outputs[0], outputs[1]);
        var (dy2, dy1) = (grads[0], grads[1]);
        var wide = y.dtype is ScalarType.Float64 ? ScalarType.Float64 : ScalarType.Float32;

        Tensor x2, dy1Total;
        using (enable_grad())
        {
            var y1Leaf = y1.detach().requires_grad_(true);
            MeftRunner.Seed(seeds[1]);
            var g = runner.G(run.Call, i, y1Leaf);
            using (no_grad()) x2 = ((y2.to_type(wide) - g.to_type(wide)) / config.X2Factor).to_type(y.dtype);
            autograd.backward([g], [dy2]);
            dy1Total = y1Leaf.grad is { } gy1 ? dy1 + gy1 : dy1.clone();
        }

        Tensor x1, dx2;
        using (enable_grad())
        {
            var x2Leaf = x2.detach().requires_grad_(true);
            MeftRunner.Seed(seeds[0]);
            var f = runner.F(run.Call, i, x2Leaf);
            using (no_grad()) x1 = ((y1.to_type(wide) - f.to_type(wide)) / config.X1Factor).to_type(y.dtype);
            autograd.backward([f], [dy1Total]);
            dx2 = x2Leaf.grad is { } gx2 ? (dy2 * config.X2Factor) + gx2 : dy2 * config.X2Factor;
        }

        using (no_grad())
        {
            return (cat([x1, x2], -1), cat([dy1Total * config.X1Factor, dx2], -1));
        }
    }
}
