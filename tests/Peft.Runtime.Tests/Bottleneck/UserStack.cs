using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Peft.Runtime.Tests.Bottleneck;

/// <summary>A user's own block with the two insertion points: <c>h = x + attn(x)</c>, <c>y = h + ffn(h)</c>, each sub-layer's
/// output passed through <see cref="BlockInsertions"/> before its residual add.</summary>
internal sealed class UserBlock : nn.Module<Tensor, Tensor>, ITransformerBlock
{
    private readonly Linear attn;
    private readonly Linear ffn;

    public UserBlock(int width) : base(nameof(UserBlock))
    {
        attn = nn.Linear(width, width);
        ffn = nn.Linear(width, width);
        RegisterComponents();
        Insertions = new BlockInsertions(this, width, width, width, width);
    }

    public BlockInsertions Insertions { get; }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var h = x + Insertions.AfterAttention(x, nn.functional.tanh(attn.call(x)));
        return (h + Insertions.AfterFeedForward(h, nn.functional.tanh(ffn.call(h)))).MoveToOuterDisposeScope();
    }
}

/// <summary>A user's own stack of three <see cref="UserBlock"/>s.</summary>
internal sealed class UserStack : nn.Module<Tensor, Tensor>, ITransformerStack
{
    public const int Width = 4;

    private readonly Embedding embed;
    private readonly ModuleList<UserBlock> blocks;
    private readonly Linear head;

    public UserStack(int seed, int width = Width) : base(nameof(UserStack))
    {
        torch.manual_seed(seed);
        embed = nn.Embedding(16, width);
        blocks = new ModuleList<UserBlock>(Enumerable.Range(0, 3).Select(_ => new UserBlock(width)).ToArray());
        head = nn.Linear(width, 2);
        RegisterComponents();
    }

    public static Tensor Ids() => torch.tensor(new long[] { 1, 2, 3, 15, 0, 7 }, new long[] { 2, 3 });

    public IReadOnlyList<nn.Module> EmbeddingModules => [embed];

    public IReadOnlyList<nn.Module> Blocks => blocks.Cast<nn.Module>().ToArray();

    public override Tensor forward(Tensor ids)
    {
        using var scope = NewDisposeScope();
        var x = embed.call(ids);
        foreach (var block in blocks) x = block.call(x);
        return head.call(x).MoveToOuterDisposeScope();
    }
}
