using Peft;
using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace AdapterBasics;

/// <summary>
/// A bag-of-embeddings sequence classifier that uses every attribute: a prompt on the embedding, LoRA and Kronecker
/// adapters (under different adapter names: a PEFT adapter has one method), and a fully trainable head.
/// </summary>
public sealed partial class TinyClassifier : Module<Tensor, Tensor>
{
    public const int Vocabulary = 64;
    public const int Dim = 32;

    [PromptTune(virtualTokens: 4, Name = "prompt")] private Module<Tensor, Tensor> embed = Embedding(Vocabulary, Dim);
    [LoRA(rank: 4, alpha: 8)] private Module<Tensor, Tensor> fc1 = Linear(Dim, 64);
    [Kronecker(rank: 4, Name = "kron")] private Module<Tensor, Tensor> fc2 = Linear(64, Dim);
    [Trainable] private Module<Tensor, Tensor> head = Linear(Dim, 2);

    public TinyClassifier() : base(nameof(TinyClassifier)) => InitializePeft();

    /// <summary>Token ids [batch, time] to class logits [batch, 2].</summary>
    public override Tensor forward(Tensor ids)
    {
        using var scope = NewDisposeScope();
        var pooled = embed.call(ids).mean(new long[] { 1 });
        var hidden = functional.relu(fc2.call(functional.relu(fc1.call(pooled))));
        return head.call(hidden).MoveToOuterDisposeScope();
    }
}
