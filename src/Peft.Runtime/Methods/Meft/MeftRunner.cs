using TorchSharp;
using static TorchSharp.torch;

namespace Peft;

/// <summary>
/// Runs a stack's blocks as MEFT's reversible layers (<see cref="MeftConfig"/>): the stream is doubled
/// (<c>x₁ = x₂ = h₀</c>), block <c>i</c> maps <c>(x₁, x₂)</c> to <c>(y₂, y₁)</c> with <c>y₁ = λx₁ + F(x₂)</c>,
/// <c>y₂ = βx₂ + G(y₁)</c>, and the stack returns <c>(x₁ + x₂)/2</c>. While gradients are recorded and no cache is passed,
/// the bottom <see cref="MeftConfig.NumRevLayers"/> trainable blocks run as one autograd node
/// (<see cref="ReversibleStackFunction"/>) that keeps only its top output and rebuilds each block's input in the backward;
/// blocks above it, a gradient-free prefix, inference and cached decoding run as ordinary code (the same function of the
/// inputs). Each block's <c>F</c> and <c>G</c> run right after reseeding the random generators with a seed drawn for them,
/// so the backward's recomputation replays the same dropout masks.
/// </summary>
public sealed class MeftRunner : IStackRunner
{
    private readonly IReadOnlyList<nn.Module> _blocks;
    private readonly IReadOnlyList<MeftAdapter> _reversible;
    private readonly IReadOnlyList<(BlockInsertions Insertions, MeftAdapter Adapter)> _feedForward;
    private readonly Action _remove;

    internal MeftRunner(string adapterName, MeftConfig config, int first, IReadOnlyList<nn.Module> blocks, IReadOnlyList<MeftAdapter> reversible,
        IReadOnlyList<(BlockInsertions Insertions, MeftAdapter Adapter)> feedForward, Action remove)
    {
        AdapterName = adapterName;
        Config = config;
        First = first;
        _blocks = blocks;
        _reversible = reversible;
        _feedForward = feedForward;
        _remove = remove;
    }

    /// <inheritdoc />
    public string AdapterName { get; }

    /// <summary>The configuration.</summary>
    public MeftConfig Config { get; }

    /// <summary>The first block of the doubled stream: blocks below it change the width and run as ordinary blocks
    /// (USE-lite's first layer).</summary>
    public int First { get; }

    /// <summary>The reversible adapters, one per block from <see cref="First"/> (<c>rev_adapters.&lt;name&gt;</c>).</summary>
    public IReadOnlyList<MeftAdapter> ReversibleAdapters => _reversible;

    /// <summary>The adapters beside each block's feed-forward sub-layer.</summary>
    public IReadOnlyList<MeftAdapter> FeedForwardAdapters => _feedForward.Select(f => f.Adapter).ToList();

    /// <summary>Active while its adapters are: a deactivated or disabled MEFT adapter leaves the stack to the base model.</summary>
    public bool Active => _reversible.Count > 0 && _reversible[0].Active;

    /// <summary>When true, the reversible forward also keeps each block's input so the backward can report how far each
    /// rebuilt input is from it (<see cref="ReconstructionErrors"/>); for tests and measurements only (it keeps what MEFT saves).</summary>
    public bool MeasureReconstruction { get; set; }

    /// <summary>After a backward with <see cref="MeasureReconstruction"/>: the largest absolute difference between each
    /// reversible block's rebuilt and true input (index = block), else empty.</summary>
    public IReadOnlyList<double> ReconstructionErrors { get; internal set; } = [];

    /// <summary>How many reversible backward passes have run (each rebuilds every reversible block once).</summary>
    public int ReversibleBackwards { get; internal set; }

    /// <inheritdoc />
    public void Remove() => _remove();

    /// <inheritdoc />
    public Tensor Run(Tensor hidden, StackCall call)
    {
        ArgumentNullException.ThrowIfNull(hidden);
        ArgumentNullException.ThrowIfNull(call);
        using var scope = NewDisposeScope();
        int n = call.BlockCount;
        int frozen = Math.Clamp(call.GradientFreeBlocks, 0, n);
        int revEnd = Math.Clamp(Config.NumRevLayers ?? n, 0, n);
        int i = 0;
        for (; i < First; i++)
        {
            using (TransformerStacks.NoGradPrefix(frozen - i)) hidden = call.Block(i, hidden);
        }

        var pair = cat([hidden, hidden], -1);
        for (; i < frozen; i++)
        {
            using (no_grad()) pair = Step(call, i, pair, null);
        }

        if (i < revEnd && is_grad_enabled() && call.Recomputable)
        {
            foreach (var t in call.Context) t.DetachFromDisposeScope();
            pair = ReversibleStackFunction.Apply(pair, new ReversibleRun(this, call, i, revEnd));
            i = revEnd;
        }

        for (; i < n; i++) pair = Step(call, i, pair, null);
        var halves = pair.chunk(2, -1);
        return ((halves[0] + halves[1]) / 2).MoveToOuterDisposeScope();
    }

    /// <summary>One reversible layer: <c>(x₁, x₂) ↦ (y₂, y₁)</c>. With <paramref name="seeds"/> it draws and records a seed for
    /// F and for G (the reversible forward); otherwise it draws them the same way when the block is training, so both paths
    /// compute the same function.</summary>
    internal Tensor Step(StackCall call, int i, Tensor pair, long[]? seeds)
    {
        using var scope = NewDisposeScope();
        var halves = pair.chunk(2, -1);
        var (x1, x2) = (halves[0], halves[1]);
        bool reseed = seeds is not null || _blocks[i - First].training;
        long seedF = reseed ? Reseed() : 0;
        var y1 = (x1 * Config.X1Factor) + F(call, i, x2);
        long seedG = reseed ? Reseed() : 0;
        var y2 = (x2 * Config.X2Factor) + G(call, i, y1);
        if (seeds is not null)
        {
            seeds[0] = seedF;
            seeds[1] = seedG;
        }

        return cat([y2, y1], -1).MoveToOuterDisposeScope();
    }

    internal Tensor F(StackCall call, int i, Tensor x) => Config.Variant == MeftVariant.Meft2 ? _reversible[i - First].Forward(x) : call.Block(i, x);

    internal Tensor G(StackCall call, int i, Tensor x) => Config.Variant == MeftVariant.Meft2 ? call.Block(i, x) : _reversible[i - First].Forward(x);

    /// <summary>Draws a seed from the CPU generator and seeds every generator with it.</summary>
    internal static long Reseed()
    {
        long seed;
        using (var draw = randint(0, int.MaxValue, [1], dtype: ScalarType.Int64)) seed = draw.item<long>();
        Seed(seed);
        return seed;
    }

    internal static void Seed(long seed)
    {
        manual_seed(seed);
        if (cuda.is_available()) cuda.manual_seed_all(seed);
    }
}

/// <summary>What one reversible forward leaves for its backward: the call, the block range and the seeds, the top output,
/// and (when measuring) each block's true input.</summary>
internal sealed class ReversibleRun(MeftRunner runner, StackCall call, int start, int end)
{
    public MeftRunner Runner { get; } = runner;

    public StackCall Call { get; } = call;

    public int Start { get; } = start;

    public int End { get; } = end;

    public long[][] Seeds { get; } = Enumerable.Range(0, end - start).Select(_ => new long[2]).ToArray();

    public Tensor? Top { get; set; }

    public List<Tensor>? Inputs { get; set; }
}
