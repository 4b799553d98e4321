using Peft;
using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace AdapterBasics;

/// <summary>
/// A plain two-layer MLP without adapter attributes: <c>[Adaptable]</c> lets configuration choose its adapted layers at
/// run time (PEFT's <c>target_modules</c>), through generated code.
/// </summary>
[Adaptable]
public sealed partial class TinyMlp : Module<Tensor, Tensor>
{
    private Module<Tensor, Tensor> up = Linear(16, 32);
    private Module<Tensor, Tensor> down = Linear(32, 16);

    public TinyMlp() : base(nameof(TinyMlp)) => InitializePeft();

    public override Tensor forward(Tensor x) => down.call(functional.relu(up.call(x)));
}
