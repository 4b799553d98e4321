using TorchSharp;
using static TorchSharp.torch;

namespace Peft;

public static partial class PeftModel
{
    /// <summary>
    /// The sum of the loss terms of the tree's live adapters that supply one (<see cref="ILossTermAdapter"/>: active on their
    /// layer, adapters not disabled), on every adapted layer, then those of the active inserted adapters (<see cref="InsertedAdapter"/>);
    /// a zero scalar when there are none. What a method's paper adds to
    /// the task loss (KaSA's β·Σd² + γ(‖BᵀB − I‖_F + ‖AAᵀ − I‖_F)).
    /// </summary>
    /// <param name="root">The model.</param>
    /// <returns>A new scalar tensor (the caller disposes it).</returns>
    public static Tensor AdapterLossTerm(this nn.Module root)
    {
        ArgumentNullException.ThrowIfNull(root);
        Tensor? total = null;
        foreach (var (_, layer) in ModuleTree.Layers(root))
        {
            foreach (var adapter in layer.Adapters)
            {
                if (adapter is not ILossTermAdapter term || !layer.IsLive(adapter)) continue;
                var value = term.LossTerm();
                if (total is null)
                {
                    total = value;
                }
                else
                {
                    var sum = total.add(value);
                    total.Dispose();
                    value.Dispose();
                    total = sum;
                }
            }
        }

        // Inserted adapters (inside attention or at a sub-layer) supply terms the same way while active (LoFiT's L1 on its scales).
        foreach (var (_, inserted) in root.InsertedAdapters())
        {
            if (inserted is not ILossTermAdapter term || !inserted.Active) continue;
            var value = term.LossTerm();
            if (total is null)
            {
                total = value;
            }
            else
            {
                var sum = total.add(value);
                total.Dispose();
                value.Dispose();
                total = sum;
            }
        }

        return total ?? torch.zeros(Array.Empty<long>());
    }

    /// <summary>
    /// <see cref="AdapterLossTerm"/> as a regularizer for <see cref="Peft.Training.TrainingOptions.Regularizers"/> (or a hosted job's
    /// <c>Regularizers</c>): the trainer evaluates it at every step, so adapters activated or added later are included.
    /// </summary>
    /// <param name="root">The model.</param>
    /// <returns>The regularizer.</returns>
    public static Func<Tensor> AdapterLossTerms(this nn.Module root)
    {
        ArgumentNullException.ThrowIfNull(root);
        return root.AdapterLossTerm;
    }
}
