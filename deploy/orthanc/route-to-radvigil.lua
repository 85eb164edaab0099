-- Orthanc auto-routing to radvigil: CR and DX images go to the modality "radvigil" as they
-- arrive; radvigil's own results (SR and Secondary Capture, Manufacturer "radvigil") never go
-- back, so there is no loop. Register radvigil in DicomModalities under the name "radvigil".
function OnStoredInstance(instanceId, tags, metadata, origin)
  if tags['Manufacturer'] == 'radvigil' then
    return
  end
  local modality = tags['Modality']
  if modality == 'CR' or modality == 'DX' then
    SendToModality(instanceId, 'radvigil')
  end
end
