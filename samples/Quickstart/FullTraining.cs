using Peft;
using TorchSharp.Modules;

namespace Quickstart;

/// <summary>Pre-training the base: every non-adapter parameter trainable (what full fine-tuning does).</summary>
internal static class FullTraining
{
    public static IReadOnlyList<Parameter> MakeBaseTrainable(TorchSharp.torch.nn.Module model)
    {
        var adapterParameters = new HashSet<Parameter>(model.AdapterParameters(), ReferenceEqualityComparer.Instance);
        var result = new List<Parameter>();
        foreach (var parameter in model.parameters())
        {
            bool isAdapter = adapterParameters.Contains(parameter);
            parameter.requires_grad = !isAdapter;
            if (!isAdapter) result.Add(parameter);
        }
        return result;
    }
}
