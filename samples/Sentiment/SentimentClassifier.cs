using Peft;
using Peft.Models.UseLite;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Sentiment;

/// <summary>
/// The pretrained Universal Sentence Encoder lite (its 512-d unit-length sentence embedding) and a fully trainable
/// linear head to two classes. The encoder declares no adapter: each method adds its own by configuration
/// (<see cref="SentimentMethod.Targets"/>, e.g. <see cref="UseLiteTargets.LoRA"/>); the head is <c>[Trainable]</c>, so it
/// trains beside the adapter and is saved with it as PEFT's <c>modules_to_save</c>.
/// </summary>
public sealed partial class SentimentClassifier : Module<Tensor, Tensor, Tensor>
{
    /// <summary>The embedding is multiplied by this before the head, so that unit-length inputs give logits of a useful size.</summary>
    public const double FeatureScale = 8.0;

    private UseLiteEncoder encoder;
    [Trainable] private Module<Tensor, Tensor> head;

    /// <summary>Wraps <paramref name="encoder"/> (owned by the caller) with a new head.</summary>
    /// <param name="encoder">The pretrained encoder.</param>
    public SentimentClassifier(UseLiteEncoder encoder) : base(nameof(SentimentClassifier))
    {
        this.encoder = encoder;
        head = Linear(UseLiteConfig.HiddenDim, 2);
        InitializePeft();
    }

    /// <summary>The encoder.</summary>
    public UseLiteEncoder Encoder => encoder;

    /// <summary>The head's parameters.</summary>
    public IEnumerable<Parameter> HeadParameters() => head.parameters();

    /// <summary>Class logits [batch, 2] of token ids and mask [batch, time] (see <see cref="UseLiteEncoder.forward"/>).</summary>
    public override Tensor forward(Tensor ids, Tensor mask)
    {
        using var scope = NewDisposeScope();
        return head.call(encoder.call(ids, mask) * FeatureScale).MoveToOuterDisposeScope();
    }
}
