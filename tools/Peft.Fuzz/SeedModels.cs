using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Peft.Fuzz;

// Seed models written as users write them: attributes on members, InitializePeft() from the generator.

/// <summary>LoRA on q/v, a plain o_proj and a [Trainable] head (PEFT's modules_to_save).</summary>
public sealed partial class FuzzLoraNet : Module<Tensor, Tensor>
{
    [LoRA(rank: 2, alpha: 4)] private Module<Tensor, Tensor> q_proj = Linear(8, 8);
    [LoRA(rank: 2, alpha: 4)] private Module<Tensor, Tensor> v_proj = Linear(8, 8);
    private Module<Tensor, Tensor> o_proj = Linear(8, 8);
    [Trainable] private Module<Tensor, Tensor> head = Linear(8, 3);

    public FuzzLoraNet() : base(nameof(FuzzLoraNet)) => InitializePeft();

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var h = o_proj.call(functional.tanh(q_proj.call(x) + v_proj.call(x)));
        return head.call(h).MoveToOuterDisposeScope();
    }

    /// <summary>A batch from <paramref name="sampler"/>: y = sum of the first 3 features.</summary>
    public static (Tensor X, Tensor Y) Batch(Generator sampler)
    {
        var x = randn(new long[] { 8, 8 }, generator: sampler);
        var y = x.narrow(1, 0, 3).sum(1, keepdim: true).expand(8, 3).contiguous();
        return (x, y);
    }
}

/// <summary>LoKr on a 16×16 layer (full factors) and a 32×32 layer (low-rank lokr_w2).</summary>
public sealed partial class FuzzKronNet : Module<Tensor, Tensor>
{
    [Kronecker(rank: 2, alpha: 4)] private Module<Tensor, Tensor> small = Linear(16, 16);
    private Module<Tensor, Tensor> up = Linear(16, 32);
    [Kronecker(rank: 2, alpha: 2)] private Module<Tensor, Tensor> wide = Linear(32, 32);

    public FuzzKronNet() : base(nameof(FuzzKronNet)) => InitializePeft();

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return wide.call(up.call(small.call(x))).MoveToOuterDisposeScope();
    }
}

/// <summary>Prompt tuning (4 virtual tokens) on an embedding, mean-pooled into a plain head.</summary>
public sealed partial class FuzzPromptNet : Module<Tensor, Tensor>
{
    [PromptTune(virtualTokens: 4)] private Module<Tensor, Tensor> embed = Embedding(20, 8);
    private Module<Tensor, Tensor> head = Linear(8, 4);

    public FuzzPromptNet() : base(nameof(FuzzPromptNet)) => InitializePeft();

    public override Tensor forward(Tensor ids)
    {
        using var scope = NewDisposeScope();
        return head.call(embed.call(ids).mean(new long[] { 1 })).MoveToOuterDisposeScope();
    }
}
